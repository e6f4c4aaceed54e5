"""Chat and generate: the conversation use cases shared by `run`, the REPL and the server.

A request names a model and options; this module resolves the model, merges options in
Ollama's order (default < Modelfile < session < request), borrows a loaded engine from the
scheduler, renders the chat template and streams the answer followed by the statistics.
The conversation is assembled as Ollama's server does it (server/routes.go): the model's
SYSTEM message unless the request starts with its own, then the Modelfile's MESSAGE rows, then
the request's turns; when the prompt does not fit in the context, the oldest turns are dropped
(system messages are kept, the last turn always stays), as Ollama's `chatPrompt` does, and the
final event says so (`truncated`); with `truncate=False` such a request fails instead.
Tools reach the prompt through the template (engine/tools.py), calls are split out of the
answer as it streams, and a `tool_choice` that requires a call constrains decoding to one.
Models that reason (engine/reasoning.py) think by default, as in Ollama; the trace streams as
`ThinkingChunk`s apart from the answer (dropped when `think` is false, except that a family's own
parser, which then reads no trace but for olmo3-think's, passes on what it reads, as Ollama's
does; a prefilled answer and, for cogito, offered tools start it outside the trace), and
earlier assistant turns of tag-thinking models lose any trace left in their content. A `format`
or a forced tool call constrains only what follows the trace: the grammar lets the trace run
free up to its closing tag (Ollama stops and restarts generation with the format once the trace
closes).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from ollamacli.config import Settings
from ollamacli.engine.base import (
    CancelToken,
    ChatMessage,
    Engine,
    SamplingConfig,
    TextChunk,
    TokenLogprob,
)
from ollamacli.engine.familycalls import DEEPSEEK_PARSERS, CallStream, call_stream
from ollamacli.engine.harmony import forced_call_grammar as harmony_call_grammar
from ollamacli.engine.harmony import shown_tools
from ollamacli.engine.options import load_config, sampling_config
from ollamacli.engine.reasoning import (
    ParserInit,
    ThinkingStyle,
    grammar_after_trace,
    output_reader,
    thinking_style,
)
from ollamacli.engine.renderers import RENDERERS
from ollamacli.engine.templates import ChatTemplate, resolve_template
from ollamacli.engine.thinking import (
    OutputReader,
    ThinkingSplit,
    ThinkValue,
    last_user_index,
    strip_thinking,
    think_enabled,
)
from ollamacli.engine.tools import ToolChoice, ToolPlan, tool_names
from ollamacli.errors import InvalidRequestError, TemplateError
from ollamacli.names import ModelName
from ollamacli.parameters import (
    OptionValue,
    defaults,
    merge_options,
    options_from_json,
    validate_options,
)
from ollamacli.scheduler import Lease, Scheduler

# The stream's event types live in service.events; chat re-exports them for its callers.
from ollamacli.service.events import ChatDone as ChatDone
from ollamacli.service.events import ChatEvent as ChatEvent
from ollamacli.service.events import ThinkingChunk as ThinkingChunk
from ollamacli.service.events import ToolCallsChunk as ToolCallsChunk
from ollamacli.service.fitting import Fit, fit_conversation
from ollamacli.store import ResolvedModel, Store

logger = logging.getLogger(__name__)

FormatSpec = str | Mapping[str, object] | None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """A chat turn: the whole conversation so far plus settings."""

    model: str
    messages: tuple[ChatMessage, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)
    session_options: Mapping[str, OptionValue] = field(default_factory=dict)
    system: str | None = None
    template: str | None = None
    format: FormatSpec = None
    tools: tuple[Mapping[str, object], ...] = ()
    tool_choice: ToolChoice = field(default_factory=ToolChoice)
    keep_alive: float | None = None
    truncate: bool = True
    think: ThinkValue = None
    logprobs: bool = False  # report each generated token's log-probability
    top_logprobs: int = 0  # and this many alternatives (0-20, only with `logprobs`)


@dataclass(frozen=True, slots=True)
class GenerateRequest:
    """A one-shot completion (`/api/generate`, `run MODEL PROMPT`)."""

    model: str
    prompt: str = ""
    system: str | None = None
    template: str | None = None
    raw: bool = False
    context: tuple[int, ...] = ()
    options: Mapping[str, object] = field(default_factory=dict)
    session_options: Mapping[str, OptionValue] = field(default_factory=dict)
    format: FormatSpec = None
    keep_alive: float | None = None
    truncate: bool = True
    think: ThinkValue = None
    logprobs: bool = False  # report each generated token's log-probability
    top_logprobs: int = 0  # and this many alternatives (0-20, only with `logprobs`)


@dataclass(frozen=True, slots=True)
class _Prompt:
    """What the engine is given: text (or tokens), and how it was made."""

    content: str | list[int]
    truncated: bool = False  # old turns were dropped to fit the context
    keep_context: bool = True  # report `context` tokens (not in raw mode, as Ollama)
    text: str = ""  # the rendered text when `content` is tokens (a `context` continuation)


@dataclass(frozen=True, slots=True)
class _Reasoning:
    """How one answer's trace is read: the model's format and what the request asked."""

    style: ThinkingStyle | None
    think: ThinkValue
    parser: str | None = None  # the model's PARSER name, if its config has one

    def reader(
        self, prompt: _Prompt, names: tuple[str, ...] = (), *, prefill: bool = False
    ) -> OutputReader | None:
        """A reader for one answer (`names`: the functions offered; `prefill`: the answer goes
        on with an assistant turn the conversation ends with)."""
        if self.style is None:
            return None
        text = prompt.content if isinstance(prompt.content, str) else prompt.text
        init = ParserInit(think_enabled(self.render_think()), prefill, bool(names))
        return output_reader(self.style, text, names, init)

    @property
    def harmony(self) -> bool:
        return self.style is not None and self.style.kind == "harmony"

    def constrain(self, grammar: str, prompt: _Prompt, *, final: bool = True) -> str:
        """The grammar for the answer, with room for the trace before it (`final`: a harmony
        answer goes on the final channel; a call writes its own header)."""
        if self.style is None:
            return grammar
        text = prompt.content if isinstance(prompt.content, str) else prompt.text
        thinking = think_enabled(self.render_think())
        return grammar_after_trace(self.style, text, grammar, thinking=thinking, final=final)

    def render_think(self) -> ThinkValue:
        """What the template sees: a thinking model thinks unless told not to (Ollama)."""
        if self.style is not None and self.think is None:
            return True
        return self.think


@dataclass(frozen=True, slots=True)
class _Prepared:
    resolved: ResolvedModel
    options: dict[str, OptionValue]


class ChatService:
    """Runs conversations on loaded models."""

    def __init__(self, settings: Settings, store: Store, scheduler: Scheduler) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler

    def prepare(
        self,
        model: str,
        request_options: Mapping[str, object],
        session_options: Mapping[str, OptionValue],
    ) -> _Prepared:
        """Resolve the model and merge options (raises on unknown models or bad options)."""
        resolved = self.store.resolve(ModelName.parse(model))
        base = {
            **defaults(),
            "num_ctx": self.settings.context_length,
            "num_thread": self.settings.num_thread,
        }
        # A model made by Ollama may carry parameters this version does not know: skip them.
        modelfile = options_from_json(resolved.parameters)
        session = validate_options(session_options)
        merged = merge_options(base, modelfile, session, validate_options(request_options))
        return _Prepared(resolved, merged)

    @contextmanager
    def lease(
        self,
        prepared: _Prepared,
        keep_alive: float | None,
        cancel: CancelToken | None = None,
        *,
        embedding: bool = False,
    ) -> Iterator[Lease]:
        """Borrow the model's engine (its embedding instance with `embedding`) from the
        scheduler, loading it first if needed."""
        resolved = prepared.resolved
        trained = resolved.config.get("context_length")
        config = load_config(
            resolved.model_path,
            prepared.options,
            adapters=resolved.adapters,
            trained_context=trained if isinstance(trained, int) else None,
            embedding=embedding,
        )
        with self.scheduler.use(
            config,
            name=resolved.name.short,
            digest=resolved.digest,
            size=resolved.size,
            keep_alive=keep_alive,
            cancel=cancel,  # a request still waiting in the queue gives up when cancelled
        ) as lease:
            yield lease

    def chat(self, request: ChatRequest, cancel: CancelToken | None = None) -> Iterator[ChatEvent]:
        """Stream the assistant's answer to a conversation."""
        started = time.perf_counter_ns()
        prepared = self.prepare(request.model, request.options, request.session_options)
        if not request.messages:
            yield from self._load_only(prepared, request.keep_alive, started)
            return
        tools = ToolPlan(request.tools, request.tool_choice)
        tools.check()
        if tools.choice.forced and request.format:
            raise InvalidRequestError(
                "format cannot be combined with a tool_choice that requires a call"
            )
        sampling = self._sampling(prepared, request.format, request.truncate)
        sampling = _with_logprobs(sampling, request.logprobs, request.top_logprobs)
        with self.lease(prepared, request.keep_alive, cancel) as lease:
            template = self._template(prepared.resolved, lease.engine, request.template)
            reasoning = self._reasoning(prepared.resolved, template, request.model, request.think)
            conversation = self.conversation(prepared.resolved, request.messages, request.system)
            if reasoning.style is not None and reasoning.style.kind == "tags":
                conversation = _without_old_traces(conversation, reasoning.style)
            fit = Fit(request.truncate, reasoning.render_think(), cancel)
            shown = tools
            if reasoning.harmony and tools.active:
                shown = dataclasses.replace(tools, tools=shown_tools(tools.tools))
            prompt = _tool_prompt(lease.engine, template, conversation, shown, fit)
            if reasoning.harmony and tools.active and tools.choice.forced:
                call = harmony_call_grammar(tools.tools, tools.choice.name)
                grammar: str | None = reasoning.constrain(call, prompt, final=False)
            else:
                grammar = tools.grammar(template.source) or sampling.grammar
                grammar = None if grammar is None else reasoning.constrain(grammar, prompt)
            if grammar is not None:
                sampling = dataclasses.replace(sampling, grammar=grammar)
            sampling = _with_special(sampling, reasoning)
            splitter = _call_splitter(reasoning, tools, template)
            prefill = conversation[-1].role == "assistant" and bool(conversation[-1].content)
            reader = _TraceReader.of(reasoning, prompt, tool_names(tools.tools), prefill=prefill)
            yield from self._stream(lease, prompt, sampling, started, cancel, (reader, splitter))

    def generate(
        self, request: GenerateRequest, cancel: CancelToken | None = None
    ) -> Iterator[ChatEvent]:
        """Stream a completion for a single prompt."""
        started = time.perf_counter_ns()
        if request.raw and (request.template or request.system or request.context):
            raise InvalidRequestError("raw mode does not support template, system, or context")
        prepared = self.prepare(request.model, request.options, request.session_options)
        if not request.prompt:
            yield from self._load_only(prepared, request.keep_alive, started)
            return
        sampling = self._sampling(prepared, request.format, request.truncate)
        sampling = _with_logprobs(sampling, request.logprobs, request.top_logprobs)
        with self.lease(prepared, request.keep_alive, cancel) as lease:
            template = self._template(prepared.resolved, lease.engine, request.template)
            reasoning = self._reasoning(prepared.resolved, template, request.model, request.think)
            if request.raw:  # no template, so no trace to read (as Ollama: no parser in raw)
                prompt = _Prompt(request.prompt, keep_context=False)
                reasoning = _Reasoning(None, None)
            else:
                prompt = self._generate_prompt(
                    prepared.resolved, lease.engine, request, reasoning.render_think(), cancel
                )
            if sampling.grammar is not None:
                grammar = reasoning.constrain(sampling.grammar, prompt)
                sampling = dataclasses.replace(sampling, grammar=grammar)
            sampling = _with_special(sampling, reasoning)
            reader = _TraceReader.of(reasoning, prompt)
            yield from self._stream(lease, prompt, sampling, started, cancel, (reader, None))

    def _reasoning(
        self,
        resolved: ResolvedModel,
        template: ChatTemplate,
        model: str,
        think: ThinkValue,
    ) -> _Reasoning:
        """The model's trace format; asking a model without one to think is Ollama's 400."""
        named = resolved.config.get("parser")
        parser = named if isinstance(named, str) and named else None
        style = thinking_style(template.source, template.kind, parser)
        if style is None and think_enabled(think):
            raise InvalidRequestError(f'"{model}" does not support thinking')
        if style is not None and style.kind == "harmony" and think == "max":
            think = "high"  # harmony's Reasoning knows low, medium and high (as Ollama)
        return _Reasoning(style, think, parser)

    def _generate_prompt(
        self,
        resolved: ResolvedModel,
        engine: Engine,
        request: GenerateRequest,
        think: ThinkValue = None,
        cancel: CancelToken | None = None,
    ) -> _Prompt:
        """Ollama's generate prompt: system, MESSAGE rows (unless continuing a `context`),
        the prompt as a user turn; a `context` is prepended as tokens."""
        turns: list[ChatMessage] = []
        system = request.system or resolved.system
        if system:
            turns.append(ChatMessage("system", system))
        if not request.context:
            turns += _seeded(resolved)
        turns.append(ChatMessage("user", request.prompt))
        template = self._template(resolved, engine, request.template)
        if request.context:
            rendered = template.render(turns, think=think, cancel=cancel)
            return _Prompt([*request.context, *engine.tokenize(rendered)], text=rendered)
        return _fit_conversation(engine, template, turns, (), Fit(request.truncate, think, cancel))

    def _sampling(self, prepared: _Prepared, fmt: FormatSpec, truncate: bool) -> SamplingConfig:
        """Sampling settings, with `format` turned into a grammar before any model loads."""
        from ollamacli.engine.llama import format_grammar  # llama.cpp's grammar tools (numpy)

        return sampling_config(prepared.options, grammar=format_grammar(fmt), truncate=truncate)

    def _load_only(
        self, prepared: _Prepared, keep_alive: float | None, started: int
    ) -> Iterator[ChatEvent]:
        """An empty request: load the model (or, with keep_alive 0, unload it)."""
        if keep_alive == 0:
            self.scheduler.unload(prepared.resolved.name.short)
            yield ChatDone(done_reason="unload", total_duration=time.perf_counter_ns() - started)
            return
        with self.lease(prepared, keep_alive) as lease:
            yield ChatDone(
                done_reason="load",
                total_duration=time.perf_counter_ns() - started,
                load_duration=lease.load_duration,
            )

    def _stream(
        self,
        lease: Lease,
        prompt: _Prompt,
        sampling: SamplingConfig,
        started: int,
        cancel: CancelToken | None = None,
        readers: tuple[_TraceReader | None, CallStream | None] = (None, None),
    ) -> Iterator[ChatEvent]:
        """The engine's output as events: the trace apart (`readers[0]`), then tool calls
        split out of the answer (`readers[1]`), then the statistics."""
        reader, splitter = readers
        for event in lease.engine.generate(prompt.content, sampling, cancel):
            if isinstance(event, TextChunk):
                yield from _answer_events(event.text, reader, splitter, event.logprobs)
                continue
            yield from _answer_events(None, reader, splitter)
            if splitter is not None:
                yield from _split_rest(splitter)
            truncated = prompt.truncated or event.truncated
            if truncated:
                logger.warning(
                    "prompt truncated to fit num_ctx %d: old turns or tokens were dropped",
                    lease.config.num_ctx,
                )
            yield ChatDone(
                done_reason=event.done_reason,
                total_duration=time.perf_counter_ns() - started,
                load_duration=lease.load_duration,
                prompt_eval_count=event.prompt_eval_count,
                prompt_eval_duration=event.prompt_eval_duration,
                eval_count=event.eval_count,
                eval_duration=event.eval_duration,
                context=event.context if prompt.keep_context else (),
                truncated=truncated,
                stop_sequence=event.stop_sequence,
            )

    @staticmethod
    def conversation(
        resolved: ResolvedModel, messages: Sequence[ChatMessage], system: str | None = None
    ) -> list[ChatMessage]:
        """The model's SYSTEM (or `system`) unless the request opens with a system message,
        then the Modelfile's MESSAGE rows, then the request's turns (Ollama's order)."""
        conversation = [*_seeded(resolved), *messages]
        system_text = system if system is not None else resolved.system
        if system_text and not (messages and messages[0].role == "system"):
            conversation.insert(0, ChatMessage("system", system_text))
        return conversation

    @staticmethod
    def _template(resolved: ResolvedModel, engine: Engine, override: str | None) -> ChatTemplate:
        """The model's template. A RENDERER (Ollama's built-in renderers) renders as Ollama's
        renderer of that name where engine/renderers.py has it (the request's `template` does
        not change that, as in Ollama), else with the GGUF's own Jinja template; the GGUF's
        template still tells the tool-call syntax."""
        renderer = resolved.config.get("renderer")
        written = renderer if isinstance(renderer, str) and renderer in RENDERERS else ""
        template = resolve_template(
            None if written else override,
            None if renderer else resolved.template,
            engine.metadata.get("tokenizer.chat_template"),
            bos_token=engine.bos_token,
            eos_token=engine.eos_token,
        )
        return dataclasses.replace(template, renderer=written) if written else template


def _tool_prompt(
    engine: Engine,
    template: ChatTemplate,
    conversation: Sequence[ChatMessage],
    tools: ToolPlan,
    fit: Fit,
) -> _Prompt:
    """The chat prompt with the request's tools; when tools are injected into a template that
    refuses `tool` turns, tool results go in as user turns instead."""
    messages, offered = tools.prompt(template.source, conversation)
    try:
        return _fit_conversation(engine, template, messages, offered, fit)
    except TemplateError:
        if not tools.injects(template.source) or not any(m.role == "tool" for m in messages):
            raise
    messages, offered = tools.prompt(template.source, conversation, tool_role=False)
    return _fit_conversation(engine, template, messages, offered, fit)


def _with_logprobs(sampling: SamplingConfig, logprobs: bool, top: int) -> SamplingConfig:
    """Logprobs as the request asks (as Ollama, `top_logprobs` alone asks for nothing)."""
    if not logprobs:
        return sampling
    return dataclasses.replace(sampling, logprobs=True, top_logprobs=max(0, min(top, 20)))


def _call_splitter(
    reasoning: _Reasoning, tools: ToolPlan, template: ChatTemplate
) -> CallStream | None:
    """The reader of tool calls in the answer: the family's own where the model's PARSER
    names one (engine/familycalls.py, whether or not tools were offered, as Ollama), else the
    one for the template's call syntax when tools are offered, or when `tool_choice` forces a
    call (the grammar writes it in that syntax)."""
    if tools.choice.mode == "auto":
        family = call_stream(reasoning.parser, tools.tools)
        if family is not None:
            return family
    return tools.splitter(template.source)


def _with_special(sampling: SamplingConfig, reasoning: _Reasoning) -> SamplingConfig:
    """Harmony's channel markers and DeepSeek's tool-call markers are control tokens: the
    engine must print them (Ollama keeps them as its parsers' preserved tokens)."""
    if reasoning.harmony or reasoning.parser in DEEPSEEK_PARSERS:
        return dataclasses.replace(sampling, special_tokens=True)
    return sampling


def _without_old_traces(
    conversation: Sequence[ChatMessage], style: ThinkingStyle
) -> list[ChatMessage]:
    """Assistant turns before the last user turn lose a trace left in their content (Ollama's
    filterThinkTags); a separate `thinking` stays for the template to use or drop."""
    last_user = last_user_index([m.role for m in conversation])
    kept = list(conversation)
    for index, message in enumerate(kept[:last_user]):
        if message.role == "assistant" and style.opening in message.content:
            content = strip_thinking(message.content, style.opening, style.closing)
            kept[index] = dataclasses.replace(message, content=content)
    return kept


@dataclass(slots=True)
class _TraceReader:
    """Reads one answer's trace; the trace goes out only when thinking is on (`keep`)."""

    reader: OutputReader
    keep: bool

    @classmethod
    def of(
        cls,
        reasoning: _Reasoning,
        prompt: _Prompt,
        names: tuple[str, ...] = (),
        *,
        prefill: bool = False,
    ) -> _TraceReader | None:
        reader = reasoning.reader(prompt, names, prefill=prefill)
        if reader is None:
            return None
        # A family's own parser already knows whether to read a trace, and what it reads goes
        # out as Ollama sends it (olmo3-think thinks whatever `think` says).
        family = reasoning.style is not None and reasoning.style.family is not None
        return cls(reader, family or think_enabled(reasoning.render_think()))

    def split(self, text: str | None) -> ThinkingSplit:
        """Trace and answer in a piece of output (None: the end of the output)."""
        split = self.reader.finish() if text is None else self.reader.push(text)
        return split if self.keep else dataclasses.replace(split, thinking="")


def _answer_events(
    text: str | None,
    reader: _TraceReader | None,
    splitter: CallStream | None,
    logprobs: tuple[TokenLogprob, ...] = (),
) -> Iterator[ChatEvent]:
    """Events for a piece of output (None: the end): thinking, then answer text with tool
    calls held back by the splitter, then calls the reader found itself (harmony).

    The piece's logprobs ride on the first of them; when a parser holds the whole piece back,
    on an empty text chunk (Ollama still sends them: a chunk with logprobs and no content)."""
    split = reader.split(text) if reader is not None else ThinkingSplit(content=text or "")
    events: list[TextChunk | ThinkingChunk | ToolCallsChunk] = []
    if split.thinking:
        events.append(ThinkingChunk(split.thinking))
    content, calls = split.content, split.calls
    if splitter is not None and content:
        found = splitter.feed(content)
        content, calls = found.content, (*calls, *found.calls)
    if content:
        events.append(TextChunk(content))
    if calls:
        events.append(ToolCallsChunk(calls))
    if logprobs:
        if events:
            events[0] = dataclasses.replace(events[0], logprobs=logprobs)
        else:
            events.append(TextChunk("", logprobs))
    yield from events


def _split_rest(splitter: CallStream) -> Iterator[ChatEvent]:
    """What the tool-call splitter still held: content, then the calls it parsed."""
    rest = splitter.finish()
    if rest.content:
        yield TextChunk(rest.content)
    if rest.calls:
        yield ToolCallsChunk(rest.calls)


def _seeded(resolved: ResolvedModel) -> list[ChatMessage]:
    """The Modelfile's MESSAGE rows."""
    return [
        ChatMessage(str(m.get("role", "user")), str(m.get("content", "")))
        for m in resolved.messages
    ]


def _fit_conversation(
    engine: Engine,
    template: ChatTemplate,
    messages: Sequence[ChatMessage],
    tools: Sequence[Mapping[str, object]],
    fit: Fit,
) -> _Prompt:
    prompt, truncated = fit_conversation(engine, template, messages, tools, fit)
    return _Prompt(prompt, truncated=truncated)
