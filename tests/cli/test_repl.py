"""The interactive REPL, driven through prompt-toolkit's pipe input with the scripted engine."""

from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path

import pytest

from ollamacli.cli import replhelp
from ollamacli.cli.answer import RunOptions
from ollamacli.config import Settings
from ollamacli.engine.base import ChatMessage
from ollamacli.modelfile import Message
from ollamacli.names import ModelName
from ollamacli.service import Services, build_services
from tests.cli.chat_helpers import (
    PLAIN,
    InterruptingFactory,
    RecordingFactory,
    make_model,
    run_script,
)
from tests.fakes import FakeFactory


@pytest.fixture
def services(settings: Settings, fake_factory: FakeFactory) -> Services:
    return build_services(settings, fake_factory)


@pytest.fixture
def tiny(services: Services, tmp_path) -> str:
    return make_model(services, tmp_path, system="Be brief.", parameters={"temperature": 0.5})


def test_scripted_session_exact_transcript(services, tiny, fake_factory):
    fake_factory.enqueue("Hello", " there!")
    fake_factory.enqueue("Four.")
    script = (
        "hi\n"
        "/set parameter temperature 0\n"
        "/set parameter num_predict 5\n"
        "/set parameter temprature 1\n"
        "/set parameter top_k many\n"
        "/frobnicate now\n"
        '"""What is\n'
        'two plus two?"""\n'
        "/bye\n"
    )
    transcript, session = run_script(services, tiny, script)
    assert transcript == (
        "Hello there!\n\n"
        "Set parameter 'temperature' to '0'\n"
        "Set parameter 'num_predict' to '5'\n"
        'Couldn\'t set parameter: "unknown parameter \\"temprature\\" '
        '(did you mean \\"temperature\\"?)"\n'
        'Couldn\'t set parameter: "invalid int value [many] for top_k"\n'
        "Unknown command '/frobnicate'. Type /? for help\n"
        "Four.\n\n"
    )
    assert session.messages == [
        ChatMessage("user", "hi"),
        ChatMessage("assistant", "Hello there!"),
        ChatMessage("user", "What is\ntwo plus two?"),
        ChatMessage("assistant", "Four."),
    ]
    engine = fake_factory.loaded[0]
    first, second = engine.samplings
    assert (first.temperature, first.num_predict) == (0.5, -1)  # the Modelfile's value
    assert (second.temperature, second.num_predict) == (0.0, 5)  # the session's values win
    assert "Be brief." in engine.prompts[1]
    assert "Hello there!" in engine.prompts[1]
    assert engine.prompts[1].endswith("What is\ntwo plus two?\n\n### Assistant:\n")


NO_THINKING = 'warning: model "tiny" does not support thinking output\n'


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/?", replhelp.USAGE),
        ("/help", replhelp.USAGE),
        ("/? shortcuts", replhelp.USAGE_SHORTCUTS),
        ("/? shortcut", replhelp.USAGE_SHORTCUTS),
        ("/? set", replhelp.USAGE_SET),
        ("/help /set", replhelp.USAGE_SET),
        ("/? show", replhelp.USAGE_SHOW),
        ("/set", replhelp.USAGE_SET),
        ("/show", replhelp.USAGE_SHOW),
        ("/set parameter", replhelp.USAGE_PARAMETERS),
        ("/set parameter seed", replhelp.USAGE_PARAMETERS),
        ("/set system", replhelp.USAGE_SET),
        ("/? nonsense", ""),
    ],
    ids=lambda value: value if value.startswith("/") else "",
)
def test_help_texts_go_to_stderr(services, tiny, command, expected):
    err = io.StringIO()
    transcript, _ = run_script(services, tiny, f"{command}\n/bye\n", err=err)
    assert transcript == ""
    assert err.getvalue() == expected


def test_main_usage_is_ollamas_text(services, tiny):
    transcript, _ = run_script(services, tiny, "/?\n/bye\n")
    assert transcript.splitlines()[:3] == [
        "Available Commands:",
        "  /set            Set session variables",
        "  /show           Show model information",
    ]
    assert 'Use """ to begin a multi-line message.\n\n' in transcript


@pytest.mark.parametrize(
    ("command", "message", "change"),
    [
        ("/set wordwrap", "Set 'wordwrap' mode.", {"wordwrap": True}),
        ("/set nowordwrap", "Set 'nowordwrap' mode.", {"wordwrap": False}),
        ("/set verbose", "Set 'verbose' mode.", {"verbose": True}),
        ("/set quiet", "Set 'quiet' mode.", {"verbose": False}),
        ("/set format json", "Set format to 'json' mode.", {"format": "json"}),
        ("/set noformat", "Disabled format.", {"format": None}),
        (
            "/set format xml",
            "Invalid or missing format. For 'json' mode use '/set format json'",
            {},
        ),
        (
            "/set format",
            "Invalid or missing format. For 'json' mode use '/set format json'",
            {},
        ),
        # tiny has no trace: Ollama warns on stderr and sets the mode anyway
        ("/set think", NO_THINKING + "Set 'think' mode.", {}),
        ("/set think high", NO_THINKING + "Set 'think' mode to 'high'.", {}),
        ("/set nothink", NO_THINKING + "Set 'nothink' mode.", {}),
    ],
    ids=lambda value: value if isinstance(value, str) and value.startswith("/") else "",
)
def test_set_modes(services, tiny, command, message, change):
    start = RunOptions(format="json", verbose=True, wordwrap=False)
    transcript, session = run_script(services, tiny, f"{command}\n/bye\n", start)
    assert transcript == message + "\n"
    expected = {"format": "json", "verbose": True, "wordwrap": False, **change}
    assert (session.options.format, session.options.verbose, session.options.wordwrap) == (
        expected["format"],
        expected["verbose"],
        expected["wordwrap"],
    )


def test_verbose_prints_ollamas_statistics_after_the_answer(services, tiny, fake_factory):
    fake_factory.enqueue("a", " b")
    err = io.StringIO()
    transcript, _ = run_script(services, tiny, "/set verbose\nhi\n/bye\n", err=err)
    assert transcript == "Set 'verbose' mode.\na b\n\n"
    lines = err.getvalue().splitlines()
    assert re.fullmatch(r"total duration:       [0-9.]+(ns|µs|ms|s)", lines[0])
    assert (
        lines[-5:]
        == [
            "prompt eval duration: 1µs",
            f"prompt eval rate:     {int(lines[-6].split()[3]) / 1e-6:.2f} tokens/s",
            "eval count:           2 token(s)",
            "eval duration:        2µs",
            "eval rate:            1000000.00 tokens/s",
        ][-5:]
    )
    assert lines[-6].startswith("prompt eval count:    ")


def test_set_system_replaces_the_modelfile_system_and_survives_clear(services, tiny, fake_factory):
    fake_factory.enqueue("Arr.")
    fake_factory.enqueue("Aye.")
    script = (
        "/set system You are a pirate.\n"
        "/show system\n"
        "hello\n"
        "/clear\n"
        "again\n"
        '/set system """Line one\n'
        'line two"""\n'
        "/show system\n"
        "/bye\n"
    )
    transcript, session = run_script(services, tiny, script)
    assert transcript == (
        "Set system message.\n"
        "You are a pirate.\n\n"
        "Arr.\n\n"
        "Cleared session context\n"
        "Aye.\n\n"
        "Set system message.\n"
        "Line one\nline two\n\n"
    )
    first, second = fake_factory.loaded[0].prompts
    assert isinstance(first, str)
    assert isinstance(second, str)
    assert first.startswith("### System:\nYou are a pirate.\n\n### User:\nhello")
    assert "Be brief." not in first
    assert second == "### System:\nYou are a pirate.\n\n### User:\nagain\n\n### Assistant:\n"
    assert session.system == "Line one\nline two"


def test_show_commands(services, tiny):
    script = (
        "/set parameter num_predict 7\n"
        "/set parameter stop <end> <stop>\n"
        "/show parameters\n"
        "/show license\n"
        "/show template\n"
        "/show modelfile\n"
        "/show weights\n"
        "/bye\n"
    )
    err = io.StringIO()
    transcript, _ = run_script(services, tiny, script + "", err=err)
    parameters = (
        "Model defined parameters:\n"
        f"  {'temperature':<30} 0.5\n"
        "\n"
        "User defined parameters:\n"
        f"  {'num_predict':<30} 7\n"
        f"  {'stop':<30} [<end> <stop>]\n"
        "\n"
    )
    assert transcript.startswith(
        "Set parameter 'num_predict' to '7'\n"
        "Set parameter 'stop' to '<end>, <stop>'\n" + parameters + "Tiny licence\nsecond line\n"
        "No prompt template was specified for this model.\n"
        '# Modelfile generated by "ollamacli show"\n'
    )
    assert "PARAMETER num_predict 7\n" in transcript
    assert "PARAMETER temperature 0.5\n" in transcript
    assert "SYSTEM Be brief.\n" in transcript
    assert transcript.endswith("Unknown command '/show weights'. Type /? for help\n")


def test_show_info_goes_to_stderr(services, tiny):
    err = io.StringIO()
    transcript, _ = run_script(services, tiny, "/show info\n/bye\n", err=err)
    assert transcript == ""
    assert err.getvalue().startswith("  Model\n    architecture        llama\n")
    assert "  System\n    Be brief.\n" in err.getvalue()


def test_show_defaults_when_the_model_has_nothing(services, tmp_path):
    model = make_model(services, tmp_path, "bare")
    transcript, _ = run_script(services, model, "/show system\n/show parameters\n/bye\n")
    assert transcript == (
        "No system message was specified for this model.\n"
        "Model defined parameters:\n"
        "  No additional parameters were specified for this model.\n"
        "\n"
    )


def test_save_creates_a_model_from_the_session(services, tiny, fake_factory):
    fake_factory.enqueue("Paris.")
    script = (
        "/set system Answer in one word.\n"
        "/set parameter temperature 0.1\n"
        "Capital of France?\n"
        "/save geo\n"
        "/save\n"
        "/save Bad:Name:x\n"
        "/bye\n"
    )
    transcript, _ = run_script(services, tiny, script)
    assert transcript.endswith(
        "Paris.\n\n"
        "Created new model 'geo'\n"
        "Usage:\n  /save <modelname>\n"
        "error: The model name 'Bad:Name:x' is invalid\n"
    )
    saved = services.store.resolve(ModelName.parse("geo"))
    assert saved.system == "Answer in one word."
    assert saved.parameters == {"temperature": 0.1}
    assert saved.messages == (
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
    )
    assert saved.config["parent_model"] == "tiny:latest"


def test_load_switches_model_and_resets_the_conversation(services, tiny, tmp_path, fake_factory):
    other = make_model(services, tmp_path, "other")
    fake_factory.enqueue("one")
    fake_factory.enqueue("two")
    script = "q1\n/load other\nq2\n/load missing\n/load\n/bye\n"
    transcript, session = run_script(services, tiny, script)
    assert transcript == (
        "one\n\n"
        "Loading model 'other'\n"
        "two\n\n"
        "Loading model 'missing'\n"
        "Couldn't find model 'missing'\n"
        "Usage:\n  /load <modelname>\n"
    )
    assert session.model == other
    assert session.messages == [ChatMessage("user", "q2"), ChatMessage("assistant", "two")]
    assert len(fake_factory.loaded) == 2
    assert "Be brief." not in fake_factory.loaded[1].prompts[0]


def test_list_prints_the_model_table(services, tiny, tmp_path):
    make_model(services, tmp_path, "other")
    transcript, _ = run_script(services, tiny, "/list\n/list oth\n/bye\n")
    lines = transcript.splitlines()
    assert lines[0].split() == ["NAME", "ID", "SIZE", "MODIFIED"]
    names = [line.split()[0] for line in lines[1:]]
    assert sorted(names[:2]) == ["other:latest", "tiny:latest"]
    assert names[2:] == ["NAME", "other:latest"]


def test_ctrl_c_on_empty_line_hints_and_ctrl_d_exits(services, tiny):
    transcript, session = run_script(services, tiny, "\x03half typed\x03\x04")
    assert transcript == "Use Ctrl + d or /bye to exit.\n"
    assert session.messages == []


def test_ctrl_c_cancels_a_multiline_block(services, tiny, fake_factory):
    fake_factory.enqueue("fine")
    transcript, session = run_script(services, tiny, '"""first\n\x03after\n/bye\n')
    assert transcript == "fine\n\n"
    assert session.messages[0] == ChatMessage("user", "after")


def test_ctrl_c_mid_answer_stops_it_and_keeps_the_session(settings, tmp_path):
    factory = InterruptingFactory(interrupt_turns={0})
    services = build_services(settings, factory)
    model = make_model(services, tmp_path)
    factory.enqueue("Once", " upon", " a", " time")
    factory.enqueue("Second", " answer")
    transcript, session = run_script(services, model, "tell a story\nagain\n/bye\n")
    assert transcript == "Once\n\nSecond answer\n\n"
    # As Ollama: the cut answer is dropped, the question stays in the conversation.
    assert session.messages == [
        ChatMessage("user", "tell a story"),
        ChatMessage("user", "again"),
        ChatMessage("assistant", "Second answer"),
    ]


def test_errors_print_and_the_session_goes_on(services, tiny, fake_factory):
    from ollamacli.cli.session import ChatSession

    out, err = io.StringIO(), io.StringIO()
    session = ChatSession(services, tiny, PLAIN, out=out, err=err)
    session.start()
    services.models.delete(tiny)
    assert session.feed("hello") is True
    assert session.feed("/show info") is True
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "Error: model 'tiny:latest' not found\n"
        "pull it first with 'ollamacli pull tiny:latest', or see 'ollamacli list'\n" * 2
    )
    assert session.messages == []
    assert session.feed("/bye") is False


def test_start_fails_cleanly_for_a_missing_model(services):
    from ollamacli.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError):
        run_script(services, "nothing-here", "/bye\n")


def test_modelfile_messages_are_replayed_and_sent(services, tmp_path, fake_factory):
    messages = (Message("user", "Who are you?"), Message("assistant", "I am Tiny."))
    model = make_model(services, tmp_path, "seeded", messages=messages)
    fake_factory.enqueue("Hi.")
    transcript, _ = run_script(services, model, "hello\n/save seeded2\n/bye\n")
    assert transcript == ">>> Who are you?\nI am Tiny.\n\nHi.\n\nCreated new model 'seeded2'\n"
    prompt = fake_factory.loaded[0].prompts[0]
    assert isinstance(prompt, str)
    assert prompt.index("Who are you?") < prompt.index("I am Tiny.") < prompt.index("hello")
    saved = services.store.resolve(ModelName.parse("seeded2"))
    assert [m["content"] for m in saved.messages] == ["Who are you?", "I am Tiny.", "hello", "Hi."]


def test_history_is_saved_unless_disabled(settings, fake_factory, tmp_path):
    services = build_services(settings, fake_factory)
    model = make_model(services, tmp_path)
    run_script(services, model, "/show system\n/set nohistory\n/show license\n/set history\n/bye\n")
    saved = settings.history_path.read_text()
    assert "+/show system\n" in saved
    assert "/show license" not in saved
    assert "+/bye\n" in saved

    quiet = build_services(settings.with_changes(nohistory=True), fake_factory)
    run_script(quiet, model, "/show template\n/bye\n")
    assert "/show template" not in settings.history_path.read_text()


def test_word_wrap_takes_words_back_at_the_margin(services, tiny, fake_factory):
    from ollamacli.cli.session import ChatSession

    fake_factory.enqueue("hello world foo", "bar baz")
    out = io.StringIO()
    session = ChatSession(services, tiny, RunOptions(), out=out, err=out, width=lambda: 20)
    session.start()
    session.feed("go")
    assert out.getvalue() == "hello world foo\x1b[3D\x1b[K\nfoobar baz\n\n"
    assert session.messages[-1].content == "hello world foobar baz"


def test_plain_options_do_not_wrap(services, tiny, fake_factory):
    fake_factory.enqueue("word " * 40)
    transcript, _ = run_script(services, tiny, "go\n/bye\n", PLAIN)
    assert transcript == "word " * 40 + "\n\n"


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "Modelfile"
MARIO_SYSTEM = "You are Mario from super mario bros, acting as an assistant."


@pytest.fixture
def real_services(settings: Settings) -> tuple[Services, RecordingFactory]:
    from ollamacli.engine.llama import LlamaCppFactory

    factory = RecordingFactory(LlamaCppFactory())
    return build_services(settings, factory), factory


def _ask_at_temperature_0(
    services: Services, model: str, question: str, *, temperature: str = "0", seed: int = 42
) -> str:
    script = (
        f"/set parameter temperature {temperature}\n"
        f"/set parameter seed {seed}\n"
        "/set parameter num_predict 12\n"
        f"{question}\n"
        "/bye\n"
    )
    transcript, session = run_script(services, model, script)
    settings_lines = (
        f"Set parameter 'temperature' to '{temperature}'\n"
        f"Set parameter 'seed' to '{seed}'\n"
        "Set parameter 'num_predict' to '12'\n"
    )
    assert transcript.startswith(settings_lines)
    assert transcript.endswith("\n\n")
    assert [m.role for m in session.messages] == ["user", "assistant"]
    answer = session.messages[1].content
    assert answer.strip()
    assert transcript == settings_lines + answer + "\n\n"
    return answer


@pytest.mark.llama
@pytest.mark.slow
def test_mario_example_answers_in_character(real_services):
    from ollamacli.modelfile import parse
    from ollamacli.service.models import CreateSpec

    services, factory = real_services
    spec = CreateSpec.from_modelfile(parse(EXAMPLE.read_text()), EXAMPLE.parent)
    services.models.create("mario", spec)
    mario = _ask_at_temperature_0(services, "mario", "Who are you?")
    prompt = factory.prompts[-1]
    assert isinstance(prompt, str)
    assert prompt.startswith(f"<|im_start|>system\n{MARIO_SYSTEM}<|im_end|>\n")
    assert prompt.endswith("<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n")
    # Whether the greedy answer names Mario depends on the CPU's arithmetic (the model's words
    # differ across machines), so two sampled answers join it: at least one of the three must be
    # in character. The prompt assertions above are the exact check that SYSTEM reached the model.
    sampled = [
        _ask_at_temperature_0(services, "mario", "Who are you?", temperature="0.7", seed=seed)
        for seed in (1, 2)
    ]
    assert any("Mario" in answer for answer in (mario, *sampled)), (mario, sampled)
    # The same question to the plain model, same settings: the character came from SYSTEM.
    plain = _ask_at_temperature_0(services, "smollm2:135m", "Who are you?")
    assert MARIO_SYSTEM not in str(factory.prompts[-1])
    assert "Mario" not in plain


@pytest.mark.llama
@pytest.mark.slow
def test_real_session_keeps_the_conversation_and_reuses_the_prefix(real_services):
    services, factory = real_services
    services.models.ensure("smollm2:135m")
    script = (
        "/set parameter temperature 0\n"
        "/set parameter num_predict 8\n"
        "/set verbose\n"
        "My name is Ada.\n"
        "What is my name?\n"
        "/bye\n"
    )
    err = io.StringIO()
    _, session = run_script(services, "smollm2:135m", script, err=err)
    assert [m.role for m in session.messages] == ["user", "assistant"] * 2
    second = factory.prompts[-1]
    assert isinstance(second, str)
    assert "My name is Ada." in second
    assert session.messages[1].content in second
    counts = [
        int(line.split()[3]) for line in err.getvalue().splitlines() if "prompt eval count" in line
    ]
    assert len(counts) == 2
    # Turn 2 evaluates only what is new after the prefix shared with turn 1.
    full = len(factory.engines[0].tokenize(second))
    assert 0 < counts[1] < full


def _editor_script(folder: Path, body: str) -> str:
    script = folder / "editor.sh"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_ctrl_g_composes_the_message_in_the_editor(settings, fake_factory, tmp_path):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from ollamacli.cli.repl import run_repl

    done = tmp_path / "edited"
    editor = _editor_script(tmp_path, f'printf "%s and more\\n" "$(cat "$1")" > "$1"; touch {done}')
    services = build_services(settings.with_changes(editor=editor), fake_factory)
    model = make_model(services, tmp_path)
    fake_factory.enqueue("Edited.")
    out = io.StringIO()
    with create_pipe_input() as pipe:

        def finish() -> None:
            # Enter only once the editor has written the file, as a person would.
            while not done.exists():
                time.sleep(0.05)
            pipe.send_text("\n/bye\n")

        pipe.send_text("draft\x07")
        threading.Thread(target=finish, daemon=True).start()
        session = run_repl(
            services, model, PLAIN, input=pipe, output=DummyOutput(), out=out, err=out
        )
    assert out.getvalue() == "Edited.\n\n"
    assert session.messages[0] == ChatMessage("user", "draft and more")


def test_a_failing_editor_keeps_the_line(tmp_path, capsys):
    from ollamacli.cli.repl import _edit_in_editor

    assert _edit_in_editor(_editor_script(tmp_path, "exit 3"), "draft") is None
    assert "error:" in capsys.readouterr().err
    assert _edit_in_editor(_editor_script(tmp_path, ': > "$1"'), "draft") is None


def test_load_of_a_model_that_cannot_load_keeps_the_current_one(settings, tmp_path):
    from dataclasses import dataclass, field

    from ollamacli.engine.base import Engine, LoadConfig
    from ollamacli.errors import ModelLoadError

    @dataclass
    class RefusingFactory(FakeFactory):
        refuse: set[str] = field(default_factory=set)

        def load(self, config: LoadConfig) -> Engine:
            if config.model_path.name in self.refuse:
                raise ModelLoadError("unable to load model", path=str(config.model_path))
            return super().load(config)

    factory = RefusingFactory()
    services = build_services(settings, factory)
    model = make_model(services, tmp_path)
    make_model(services, tmp_path, "broken")
    factory.refuse.add(services.store.resolve(ModelName.parse("broken")).model_path.name)
    factory.enqueue("Still tiny.")
    err = io.StringIO()
    transcript, session = run_script(services, model, "/load broken\nhello\n/bye\n", err=err)
    assert transcript == "Loading model 'broken'\nStill tiny.\n\n"
    assert err.getvalue() == "Error: unable to load model\n"
    assert session.model == model
    assert session.messages[-1] == ChatMessage("assistant", "Still tiny.")
