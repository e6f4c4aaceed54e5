"""Ollama's built-in renderers (RENDERER cogito, deepseek3.1, olmo3, olmo3.1, olmo3-think,
olmo3-32b-think) render byte for byte as Ollama's; the expected prompts are those of Ollama's
own tests (model/renderers/*_test.go)."""

# ruff: noqa: RUF001  (DeepSeek's markers are spelled with full-width bars)
from __future__ import annotations

import pytest

from ollamacli.engine.base import ChatMessage, ToolCall
from ollamacli.engine.renderers import RENDERERS, render, with_spaces

COGITO = (
    "You are Cogito, an AI assistant created by Deep Cogito, which is an AI research lab "
    "based in San Francisco."
)
DEEP = "Enable deep thinking subroutine.\n\n"
BOS = "<｜begin▁of▁sentence｜>"
FENCE = "```"


def weather(description: str = "Get current weather", city: str = "City name") -> dict[str, object]:
    return {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": description,
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string", "description": city}},
                "required": ["location"],
            },
        },
    }


def call(city: str) -> ToolCall:
    return ToolCall("get_weather", {"location": city})


def user(text: str) -> ChatMessage:
    return ChatMessage("user", text)


def assistant(text: str, *calls: ToolCall, thinking: str = "") -> ChatMessage:
    return ChatMessage("assistant", text, tool_calls=calls, thinking=thinking)


def tool(text: str) -> ChatMessage:
    return ChatMessage("tool", text)


SYSTEM = ChatMessage("system", "You are a helpful assistant.")
HOW = user("Hello, how are you?")
COGITO_TOOL_BLOCK = (
    "You have the following functions available:\n" + FENCE + "json\n"
    "{\n"
    '    "type": "function",\n'
    '    "function": {\n'
    '        "name": "get_weather",\n'
    '        "description": "Get current weather",\n'
    '        "parameters": {\n'
    '            "type": "object",\n'
    '            "required": [\n'
    '                "location"\n'
    "            ],\n"
    '            "properties": {\n'
    '                "location": {\n'
    '                    "type": "string",\n'
    '                    "description": "City name"\n'
    "                }\n"
    "            }\n"
    "        }\n"
    "    }\n"
    "}\n" + FENCE + "\n"
)
PARIS_CALL = (
    "<｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n"
    + FENCE
    + 'json\n{"location":"Paris"}\n'
    + FENCE
    + "<｜tool▁call▁end｜>"
)
LONDON_CALL = PARIS_CALL.replace("Paris", "London")

COGITO_CASES = [
    ("basic", [HOW], False, (), f"{BOS}{COGITO}<｜User｜>Hello, how are you?<｜Assistant｜>"),
    (
        "system",
        [SYSTEM, HOW],
        False,
        (),
        f"{BOS}{COGITO}\n\nYou are a helpful assistant.<｜User｜>Hello, how are you?<｜Assistant｜>",
    ),
    (
        "conversation",
        [
            user("What is the capital of France?"),
            assistant("The capital of France is Paris."),
            user("Fantastic!"),
        ],
        False,
        (),
        f"{BOS}{COGITO}<｜User｜>What is the capital of France?<｜Assistant｜>The capital of "
        "France is Paris.<｜end▁of▁sentence｜><｜User｜>Fantastic!<｜Assistant｜>",
    ),
    (
        "thinking",
        [HOW],
        True,
        (),
        f"{BOS}{DEEP}{COGITO}<｜User｜>Hello, how are you?<｜Assistant｜><think>\n",
    ),
    (
        "thinking-system",
        [SYSTEM, HOW],
        True,
        (),
        f"{BOS}{DEEP}{COGITO}\n\nYou are a helpful assistant.\n\n<｜User｜>Hello, how are you?"
        "<｜Assistant｜><think>\n",
    ),
    (
        "tools",
        [user("What's the weather like?")],
        False,
        (weather(),),
        f"{BOS}{COGITO}\n{COGITO_TOOL_BLOCK}<｜User｜>What's the weather like?<｜Assistant｜>",
    ),
    (
        "thinking-tools",
        [user("What's the weather like?")],
        True,
        (weather(),),
        f"{BOS}{DEEP}{COGITO}\n{COGITO_TOOL_BLOCK}<｜User｜>What's the weather like?"
        "<｜Assistant｜><think>\n",
    ),
    (
        "call-with-content",
        [
            user("What's the weather in Paris?"),
            assistant("I'll check the weather in Paris for you.", call("Paris")),
        ],
        False,
        (),
        f"{BOS}{COGITO}<｜User｜>What's the weather in Paris?<｜Assistant｜>I'll check the "
        f"weather in Paris for you.<｜tool▁calls▁begin｜>{PARIS_CALL}<｜tool▁calls▁end｜>"
        "<｜end▁of▁sentence｜><｜Assistant｜>",
    ),
    (
        "tool-responses",
        [
            user("Get weather for Paris and London"),
            assistant("", call("Paris"), call("London")),
            tool("Paris: 22°C, Sunny"),
            tool("London: 18°C, Cloudy"),
        ],
        False,
        (),
        f"{BOS}{COGITO}<｜User｜>Get weather for Paris and London<｜Assistant｜>"
        f"<｜tool▁calls▁begin｜>{PARIS_CALL}\n{LONDON_CALL}<｜tool▁calls▁end｜>"
        "<｜end▁of▁sentence｜><｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>Paris: 22°C, "
        "Sunny<｜tool▁output▁end｜>\n<｜tool▁output▁begin｜>London: 18°C, Cloudy"
        "<｜tool▁output▁end｜><｜tool▁outputs▁end｜><｜Assistant｜>",
    ),
    (
        "complex-arguments",
        [
            user("Process complex data"),
            assistant(
                "",
                ToolCall(
                    "process_data",
                    {
                        "config": {
                            "enabled": True,
                            "threshold": 0.95,
                            "tags": ["important", "urgent"],
                        },
                        "items": ["item1", "item2", "item3"],
                    },
                ),
            ),
        ],
        False,
        (),
        f"{BOS}{COGITO}<｜User｜>Process complex data<｜Assistant｜><｜tool▁calls▁begin｜>"
        "<｜tool▁call▁begin｜>function<｜tool▁sep｜>process_data\n" + FENCE + "json\n"
        '{"config":{"enabled":true,"tags":["important","urgent"],"threshold":0.95},'
        '"items":["item1","item2","item3"]}\n' + FENCE + "<｜tool▁call▁end｜><｜tool▁calls▁end｜>"
        "<｜end▁of▁sentence｜><｜Assistant｜>",
    ),
    (
        "empty-messages",
        [ChatMessage("system", ""), user("Hello"), assistant("")],
        False,
        (),
        f"{BOS}{COGITO}<｜User｜>Hello<｜Assistant｜><｜end▁of▁sentence｜><｜Assistant｜>",
    ),
]


COGITO_CASES += [
    (
        "system-thinking-prefill-closed",
        [ChatMessage("system", "You are a helpful assistant"), user("Start"), assistant("Okay")],
        True,
        (),
        f"{BOS}{DEEP}{COGITO}\n\nYou are a helpful assistant\n\n<｜User｜>Start<｜Assistant｜>"
        "Okay<｜end▁of▁sentence｜><｜Assistant｜><think>\n",
    ),
    (
        "thinking-empty-assistant",
        [user("Think about this"), assistant("")],
        True,
        (),
        f"{BOS}{DEEP}{COGITO}<｜User｜>Think about this<｜Assistant｜><｜end▁of▁sentence｜>"
        "<｜Assistant｜><think>\n",
    ),
    (
        "second-system-ignored",
        [
            ChatMessage("system", "First instruction"),
            ChatMessage("system", "Second instruction"),
            user("Hello"),
        ],
        False,
        (),
        f"{BOS}{COGITO}\n\nFirst instruction<｜User｜>Hello<｜Assistant｜>",
    ),
    (
        "special-characters",
        [
            user('What about <|special|> tokens and "quotes"?'),
            assistant("They're handled normally in content."),
        ],
        False,
        (),
        f'{BOS}{COGITO}<｜User｜>What about <|special|> tokens and "quotes"?<｜Assistant｜>'
        "They're handled normally in content.<｜end▁of▁sentence｜><｜Assistant｜>",
    ),
]


@pytest.mark.parametrize(
    ("messages", "think", "tools", "expected"),
    [case[1:] for case in COGITO_CASES],
    ids=[case[0] for case in COGITO_CASES],
)
def test_cogito(messages, think, tools, expected):
    assert render("cogito", messages, tools, think) == expected


DS_TOOLS = (
    "\n\n## Tools\nYou have access to the following tools:\n\n### get_weather\n"
    "Description: Get current weather information\n\n"
    'Parameters: {"type":"object","required":["location"],"properties":{"location":'
    '{"type":"string","description":"City name"}}}\n\n'
    "IMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>tool_call_name<｜tool▁sep｜>tool_call_arguments"
    "<｜tool▁call▁end｜>{{additional_tool_calls}}<｜tool▁calls▁end｜>\n\nWhere:\n\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters "
    "Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces\n"
)
DS_CALL = '<｜tool▁call▁begin｜>get_weather<｜tool▁sep｜>{{"location":"{}"}}<｜tool▁call▁end｜>'

DEEPSEEK_CASES = [
    (
        "multiple-systems",
        [
            ChatMessage("system", "First instruction"),
            ChatMessage("system", "Second instruction"),
            user("Hello"),
        ],
        False,
        (),
        f"{BOS}First instruction\n\nSecond instruction<｜User｜>Hello<｜Assistant｜></think>",
    ),
    ("thinking", [HOW], True, (), f"{BOS}<｜User｜>Hello, how are you?<｜Assistant｜><think>"),
    (
        "thinking-system",
        [SYSTEM, HOW],
        True,
        (),
        f"{BOS}You are a helpful assistant.<｜User｜>Hello, how are you?<｜Assistant｜><think>",
    ),
    (
        "tool-response",
        [
            user("What's the weather?"),
            assistant("", call("Paris")),
            tool("Temperature: 22°C, Sunny"),
        ],
        False,
        (),
        f"{BOS}<｜User｜>What's the weather?<｜Assistant｜></think><｜tool▁calls▁begin｜>"
        + DS_CALL.format("Paris")
        + "<｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁output▁begin｜>Temperature: 22°C, "
        "Sunny<｜tool▁output▁end｜>",
    ),
    (
        "think-tag-removal",
        [user("Think about this"), assistant("I'm thinking about this.</think>The answer is 42.")],
        False,
        (),
        f"{BOS}<｜User｜>Think about this<｜Assistant｜></think>The answer is 42."
        "<｜end▁of▁sentence｜>",
    ),
    (
        "multiple-think-tags",
        [
            user("Complex question"),
            assistant("First thought</think>Second thought</think>Final answer"),
        ],
        False,
        (),
        f"{BOS}<｜User｜>Complex question<｜Assistant｜></think>Second thought</think>Final "
        "answer<｜end▁of▁sentence｜>",
    ),
    (
        "thinking-after-tool-call",
        [
            user("What's the weather in Paris?"),
            assistant("", call("Paris")),
            tool("Temperature: 22°C, Sunny"),
            assistant("Based on the weather data, it's sunny in Paris."),
            user("Now tell me about London weather too."),
        ],
        True,
        (),
        f"{BOS}<｜User｜>What's the weather in Paris?<｜Assistant｜></think><｜tool▁calls▁begin｜>"
        + DS_CALL.format("Paris")
        + "<｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁output▁begin｜>Temperature: 22°C, "
        "Sunny<｜tool▁output▁end｜>Based on the weather data, it's sunny in Paris."
        "<｜end▁of▁sentence｜><｜User｜>Now tell me about London weather too.<｜Assistant｜>"
        "<think>",
    ),
    (
        "old-thinking-not-rendered",
        [
            user("Explain quantum physics"),
            assistant(
                "Quantum physics is the study of matter and energy at the smallest scales.",
                thinking="This is a complex topic.",
            ),
            user("What about photons?"),
            assistant("Photons are particles of light with no mass."),
            user("How do they interact with matter?"),
        ],
        True,
        (),
        f"{BOS}<｜User｜>Explain quantum physics<｜Assistant｜></think>Quantum physics is the "
        "study of matter and energy at the smallest scales.<｜end▁of▁sentence｜><｜User｜>What "
        "about photons?<｜Assistant｜></think>Photons are particles of light with no mass."
        "<｜end▁of▁sentence｜><｜User｜>How do they interact with matter?<｜Assistant｜><think>",
    ),
    (
        "call-with-thinking-and-content",
        [
            user("What's the weather in Tokyo and New York?"),
            assistant(
                "I'll check the weather for both cities.",
                call("Tokyo"),
                call("New York"),
                thinking="I need to call the weather API for two different cities.",
            ),
            tool("Tokyo: 18°C, Cloudy"),
            tool("New York: 22°C, Sunny"),
            assistant(
                "Based on the weather data: Tokyo is cloudy at 18°C, while New York is sunny "
                "at 22°C.",
                thinking="The data shows a nice contrast between the two cities.",
            ),
        ],
        True,
        (),
        f"{BOS}<｜User｜>What's the weather in Tokyo and New York?<｜Assistant｜></think>I'll "
        "check the weather for both cities.<｜tool▁calls▁begin｜>"
        + DS_CALL.format("Tokyo")
        + DS_CALL.format("New York")
        + "<｜tool▁calls▁end｜><｜end▁of▁sentence｜><｜tool▁output▁begin｜>Tokyo: 18°C, Cloudy"
        "<｜tool▁output▁end｜><｜tool▁output▁begin｜>New York: 22°C, Sunny<｜tool▁output▁end｜>"
        "Based on the weather data: Tokyo is cloudy at 18°C, while New York is sunny at 22°C."
        "<｜end▁of▁sentence｜>",
    ),
    (
        "empty-thinking",
        [user("Simple question"), assistant("Simple answer.")],
        True,
        (),
        f"{BOS}<｜User｜>Simple question<｜Assistant｜></think>Simple answer.<｜end▁of▁sentence｜>",
    ),
    (
        "tools",
        [SYSTEM, user("What's the weather like?")],
        False,
        (weather("Get current weather information"),),
        f"{BOS}You are a helpful assistant.{DS_TOOLS}<｜User｜>What's the weather like?"
        "<｜Assistant｜></think>",
    ),
]


DS_TWO_TOOLS = DS_TOOLS.replace(
    "\n\nIMPORTANT:",
    "\n\n### calculate\nDescription: Perform mathematical calculations\n\nParameters: "
    '{"type":"object","required":["expression"],"properties":{"expression":{"type":"string",'
    '"description":"Mathematical expression to evaluate"}}}\n\nIMPORTANT:',
)
CALCULATE: dict[str, object] = {
    "type": "function",
    "function": {
        "name": "calculate",
        "description": "Perform mathematical calculations",
        "parameters": {
            "type": "object",
            "properties": {
                "expression": {
                    "type": "string",
                    "description": "Mathematical expression to evaluate",
                }
            },
            "required": ["expression"],
        },
    },
}
DEEPSEEK_CASES += [
    (
        "two-tools",
        [
            ChatMessage("system", "You are a helpful assistant with access to multiple tools."),
            user("What can you help me with?"),
        ],
        False,
        (weather("Get current weather information"), CALCULATE),
        f"{BOS}You are a helpful assistant with access to multiple tools.{DS_TWO_TOOLS}"
        "<｜User｜>What can you help me with?<｜Assistant｜></think>",
    ),
    (
        "thinking-on-each-turn",
        [
            user("hey!"),
            assistant("Hey! 😊 How's it going?", thinking="A greeting."),
            user("fantastic, how has yours been"),
            assistant("Glad to hear it!\n\nMine's been great.", thinking="Warm reply."),
            user("awesome, can you tell me a 10 word story?"),
        ],
        True,
        (),
        f"{BOS}<｜User｜>hey!<｜Assistant｜></think>Hey! 😊 How's it going?<｜end▁of▁sentence｜>"
        "<｜User｜>fantastic, how has yours been<｜Assistant｜></think>Glad to hear it!\n\n"
        "Mine's been great.<｜end▁of▁sentence｜><｜User｜>awesome, can you tell me a 10 word "
        "story?<｜Assistant｜><think>",
    ),
    (
        "embedded-think-tags",
        [
            user("Who are you?"),
            assistant("<think>Hmm</think>I am DeepSeek"),
            user("Thanks! Can you tell me a 10 word story?"),
        ],
        True,
        (),
        f"{BOS}<｜User｜>Who are you?<｜Assistant｜></think>I am DeepSeek<｜end▁of▁sentence｜>"
        "<｜User｜>Thanks! Can you tell me a 10 word story?<｜Assistant｜><think>",
    ),
]


@pytest.mark.parametrize(
    ("messages", "think", "tools", "expected"),
    [case[1:] for case in DEEPSEEK_CASES],
    ids=[case[0] for case in DEEPSEEK_CASES],
)
def test_deepseek31(messages, think, tools, expected):
    assert render("deepseek3.1", messages, tools, think) == expected


OLMO31 = (
    "You are Olmo, a helpful AI assistant built by Ai2. Your date cutoff is December 2024, "
    "and your model weights are available at https://huggingface.co/allenai."
)


@pytest.mark.parametrize(
    ("name", "messages", "tools", "system"),
    [
        ("olmo3-think", [user("Hello!")], (), OLMO31),
        (
            "olmo3-think",
            [SYSTEM, user("Hello!")],
            (),
            "You are a helpful assistant. You do not currently have access to any functions. "
            "<functions></functions>",
        ),
        ("olmo3-think", [user("Hello!")], (weather(),), OLMO31),  # tools are ignored
        ("olmo3-32b-think", [user("Hello!")], (), "You are a helpful AI assistant."),
    ],
)
def test_olmo3_think(name, messages, tools, system):
    expected = (
        f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
        "<|im_start|>assistant\n<think>"
    )
    assert render(name, messages, tools, True) == expected


def test_olmo3_think_leaves_out_calls_and_tool_turns():
    messages = [
        user("What is the weather in SF?"),
        assistant("Let me check the weather.", call("San Francisco")),
        tool('{"temperature": 68}'),
    ]
    assert render("olmo3-think", messages, (), True) == (
        f"<|im_start|>system\n{OLMO31}<|im_end|>\n<|im_start|>user\nWhat is the weather in SF?"
        "<|im_end|>\n<|im_start|>assistant\nLet me check the weather.<|im_end|>\n"
        "<|im_start|>assistant\n<think>"
    )


OLMO_FUNCTIONS = (
    '<functions>[{"type": "function", "function": {"name": "get_weather", "description": '
    '"Get the current weather", "parameters": {"type": "object", "required": ["location"], '
    '"properties": {"location": {"type": "string", "description": "The city"}}}}}]</functions>'
)
OLMO3_DEFAULT = "You are a helpful function-calling AI assistant. "


@pytest.mark.parametrize(
    ("messages", "tools", "expected"),
    [
        (
            [user("Hello!")],
            (),
            f"<|im_start|>system\n{OLMO3_DEFAULT}You do not currently have access to any "
            "functions. <functions></functions><|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
            "<|im_start|>assistant\n",
        ),
        (
            [SYSTEM, user("Hello!")],
            (),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "Hello!<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            [SYSTEM, user("What is the weather?")],
            (weather("Get the current weather", "The city"),),
            f"<|im_start|>system\nYou are a helpful assistant.{OLMO_FUNCTIONS}<|im_end|>\n"
            "<|im_start|>user\nWhat is the weather?<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            [user("What is the weather?")],
            (weather("Get the current weather", "The city"),),
            f"<|im_start|>system\n{OLMO3_DEFAULT}You are provided with function signatures "
            "within <functions></functions> XML tags. You may call one or more functions to "
            "assist with the user query. Output any function calls within "
            "<function_calls></function_calls> XML tags. Do not make assumptions about what "
            f"values to plug into functions.{OLMO_FUNCTIONS}<|im_end|>\n<|im_start|>user\n"
            "What is the weather?<|im_end|>\n<|im_start|>assistant\n",
        ),
        (
            [
                SYSTEM,
                user("What is the weather in SF?"),
                assistant("Let me check the weather.", call("San Francisco")),
                ChatMessage("tool", '{"temperature": 68}', tool_name="get_weather"),
            ],
            (weather("Get the current weather", "The city"),),
            f"<|im_start|>system\nYou are a helpful assistant.{OLMO_FUNCTIONS}<|im_end|>\n"
            "<|im_start|>user\nWhat is the weather in SF?<|im_end|>\n<|im_start|>assistant\n"
            'Let me check the weather.<function_calls>get_weather(location="San Francisco")'
            "</function_calls><|im_end|>\n<|im_start|>environment\n"
            '{"temperature": 68}<|im_end|>\n<|im_start|>assistant\n',
        ),
        (
            [SYSTEM, user("Hello"), assistant("Hi there!"), user("How are you?")],
            (),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "Hello<|im_end|>\n<|im_start|>assistant\nHi there!<|im_end|>\n<|im_start|>user\n"
            "How are you?<|im_end|>\n<|im_start|>assistant\n",
        ),
    ],
    ids=["default-system", "system", "system-tools", "default-tools", "calls", "multi-turn"],
)
def test_olmo3(messages, tools, expected):
    assert render("olmo3", messages, tools, None) == expected


def test_olmo31_has_its_own_default_and_a_prefill_stays_open():
    assert render("olmo3.1", [user("Hi"), assistant("Partial")], (), None) == (
        f"<|im_start|>system\n{OLMO31} You do not currently have access to any functions. "
        "<functions></functions><|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nPartial"
    )


def test_spaced_json_leaves_strings_alone():
    assert with_spaces('{"a":"x, y: z\\"","b":[1,2]}') == '{"a": "x, y: z\\"", "b": [1, 2]}'


def test_every_renderer_written_is_an_accepted_name():
    from ollamacli.engine.reasoning import RENDERERS as ACCEPTED

    assert set(RENDERERS) <= ACCEPTED


# Qwen 3.5 and Qwen 3 Coder: Ollama's qwen35_test.go and qwen3coder_test.go.


def location_tool(name: str = "get_weather") -> dict[str, object]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {
                "type": "object",
                "properties": {"location": {"type": "string"}},
                "required": ["location"],
            },
        },
    }


def math_tool(name: str, *keys: str) -> dict[str, object]:
    properties = {key: {"type": "number"} for key in keys}
    return {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {"type": "object", "properties": properties, "required": list(keys)},
        },
    }


def test_qwen35_tools_and_xml_calls():
    messages = [
        SYSTEM,
        user("What's the weather in Paris?"),
        assistant("I'll check.", ToolCall("get_weather", {"location": "Paris"})),
        tool("22C"),
        user("Thanks"),
    ]
    got = render("qwen3.5", messages, (location_tool(),), None)
    assert got.startswith(
        "<|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": '
        '"object", "required": ["location"], "properties": {"location": {"type": "string"}}}}}'
        "\n</tools>\n\nIf you choose to call a function ONLY reply in the following format"
    )
    assert "<function=example_function_name>" in got
    assert (
        "<tool_call>\n<function=get_weather>\n<parameter=location>\nParis\n</parameter>\n"
        "</function>\n</tool_call>"
    ) in got
    assert got.index("# Tools") < got.index("You are a helpful assistant.")
    assert "</IMPORTANT>\n\nYou are a helpful assistant.<|im_end|>\n" in got


def test_qwen35_no_think_prefill():
    got = render("qwen3.5", [user("hello")], (), False)
    assert (
        got == "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_qwen35_back_to_back_calls_and_responses():
    messages = [
        SYSTEM,
        user("Run add and multiply."),
        assistant(
            "I'll run both now.",
            ToolCall("add", {"a": 2, "b": 3}),
            ToolCall("multiply", {"x": 4, "y": 5}),
            thinking="Need to call add and multiply.",
        ),
        tool("5"),
        tool("20"),
        user("Summarize the results."),
    ]
    tools = (math_tool("add", "a", "b"), math_tool("multiply", "x", "y"))
    got = render("qwen3.5", messages, tools, None)
    assert "Need to call add and multiply." not in got  # an earlier turn's trace
    assert (
        "<tool_call>\n<function=add>\n<parameter=a>\n2\n</parameter>\n<parameter=b>\n3\n"
        "</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=multiply>\n"
        "<parameter=x>\n4\n</parameter>\n<parameter=y>\n5\n</parameter>\n</function>\n"
        "</tool_call>"
    ) in got
    assert (
        "<|im_start|>user\n<tool_response>\n5\n</tool_response>\n<tool_response>\n20\n"
        "</tool_response><|im_end|>"
    ) in got
    assert got.endswith("<|im_start|>assistant\n<think>\n")


def test_qwen35_interleaved_thinking_and_tools():
    messages = [
        SYSTEM,
        user("Plan a picnic in Paris."),
        assistant(
            "Checking weather first.",
            ToolCall("get_weather", {"location": "Paris"}),
            thinking="Need weather before giving advice.",
        ),
        tool("22C"),
        assistant(
            "Checking UV too.",
            ToolCall("get_uv", {"location": "Paris"}),
            thinking="Need UV index for sunscreen advice.",
        ),
        tool("5"),
    ]
    got = render("qwen3.5", messages, (location_tool(), location_tool("get_uv")), None)
    for trace, text, name in (
        ("Need weather before giving advice.", "Checking weather first.", "get_weather"),
        ("Need UV index for sunscreen advice.", "Checking UV too.", "get_uv"),
    ):
        assert (
            f"<|im_start|>assistant\n<think>\n{trace}\n</think>\n\n{text}\n\n<tool_call>\n"
            f"<function={name}>\n<parameter=location>\nParis\n</parameter>\n</function>\n"
            "</tool_call><|im_end|>"
        ) in got
    assert got.endswith("<|im_start|>assistant\n<think>\n")


def test_qwen35_prefill_with_thinking():
    messages = [user("Write two words."), assistant("Hello world", thinking="Keep it short.")]
    assert render("qwen3.5", messages, (), None) == (
        "<|im_start|>user\nWrite two words.<|im_end|>\n<|im_start|>assistant\n<think>\n"
        "Keep it short.\n</think>\n\nHello world"
    )


QWEN_FORMAT = (
    "If you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n"
    "</parameter>\n<parameter=example_parameter_2>\nThis is the value for the second "
    "parameter\nthat can span\nmultiple lines\n</parameter>\n</function>\n</tool_call>\n\n"
    "<IMPORTANT>\nReminder:\n- Function calls MUST follow the specified format: an inner "
    "<function=...></function> block must be nested within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n- You may provide optional reasoning for your "
    "function call in natural language BEFORE the function call, but NOT after\n- If there is "
    "no function call available, answer the question like normal with your current knowledge "
    "and do not tell the user about function calls\n</IMPORTANT>"
)
TOOLS_SYSTEM = ChatMessage("system", "You are a helpful assistant with access to tools.")


def test_qwen3_coder_basic_and_prefill():
    assert render("qwen3-coder", [SYSTEM, HOW], (), None) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Hello, how are you?<|im_end|>\n<|im_start|>assistant\n"
    )
    prefill = [
        SYSTEM,
        user("Tell me something interesting."),
        assistant("I'll tell you something interesting about cats"),
    ]
    assert render("qwen3-coder", prefill, (), None) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Tell me something interesting.<|im_end|>\n<|im_start|>assistant\n"
        "I'll tell you something interesting about cats"
    )


def test_qwen3_coder_tools_and_response():
    unit = {
        "type": "string",
        "enum": ["celsius", "fahrenheit"],
        "description": "The unit of temperature",
    }
    tools = (
        {
            "function": {
                "name": "get_weather",
                "description": "Get the current weather in a given location",
                "parameters": {"required": ["unit"], "properties": {"unit": unit}},
            }
        },
    )
    weather = (
        '{"location": "San Francisco, CA", "temperature": 68, "condition": "partly cloudy", '
        '"humidity": 65, "wind_speed": 12}'
    )
    messages = [
        TOOLS_SYSTEM,
        user("What is the weather like in San Francisco?"),
        assistant(
            "I'll check the weather in San Francisco for you.",
            ToolCall("get_weather", {"unit": "fahrenheit"}),
        ),
        ChatMessage("tool", weather, tool_name="get_weather"),
        user("That sounds nice! What about New York?"),
    ]
    assert render("qwen3-coder", messages, tools, None) == (
        "<|im_start|>system\nYou are a helpful assistant with access to tools.\n\n# Tools\n\n"
        "You have access to the following functions:\n\n<tools>\n<function>\n"
        "<name>get_weather</name>\n<description>Get the current weather in a given location"
        "</description>\n<parameters>\n<parameter>\n<name>unit</name>\n<type>string</type>\n"
        "<description>The unit of temperature</description>\n"
        '<enum>["celsius","fahrenheit"]</enum>\n</parameter>\n<required>["unit"]</required>\n'
        f"</parameters>\n</function>\n</tools>\n\n{QWEN_FORMAT}<|im_end|>\n<|im_start|>user\n"
        "What is the weather like in San Francisco?<|im_end|>\n<|im_start|>assistant\n"
        "I'll check the weather in San Francisco for you.\n\n<tool_call>\n"
        "<function=get_weather>\n<parameter=unit>\nfahrenheit\n</parameter>\n</function>\n"
        f"</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{weather}\n"
        "</tool_response><|im_end|>\n<|im_start|>user\nThat sounds nice! What about New York?"
        "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_qwen3_coder_parallel_calls_and_json_arguments():
    def number_tool(name: str, verb: str) -> dict[str, object]:
        prop = {"type": "string", "description": f"The number to {verb}"}
        return {
            "function": {
                "name": name,
                "description": f"{verb.capitalize()} a number",
                "parameters": {"properties": {"number": prop}},
            }
        }

    messages = [
        TOOLS_SYSTEM,
        user("call double(1) and triple(2)"),
        assistant(
            "I'll call double(1) and triple(2) for you.",
            ToolCall("double", {"number": "1"}),
            ToolCall("triple", {"number": "2"}),
        ),
        ChatMessage("tool", '{"number": 2}', tool_name="double"),
        ChatMessage("tool", '{"number": 6}', tool_name="triple"),
    ]
    got = render(
        "qwen3-coder",
        messages,
        (number_tool("double", "double"), number_tool("triple", "triple")),
        None,
    )
    assert got.endswith(
        "<|im_start|>user\ncall double(1) and triple(2)<|im_end|>\n<|im_start|>assistant\n"
        "I'll call double(1) and triple(2) for you.\n\n<tool_call>\n<function=double>\n"
        "<parameter=number>\n1\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n"
        "<function=triple>\n<parameter=number>\n2\n</parameter>\n</function>\n</tool_call>"
        '<|im_end|>\n<|im_start|>user\n<tool_response>\n{"number": 2}\n</tool_response>\n'
        '<tool_response>\n{"number": 6}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    )
    assert (
        "<function>\n<name>double</name>\n<description>Double a number</description>\n"
        "<parameters>\n<parameter>\n<name>number</name>\n<type>string</type>\n"
        "<description>The number to double</description>\n</parameter>\n</parameters>\n"
        "</function>"
    ) in got
    echo = [
        user("call tool"),
        assistant("", ToolCall("echo", {"payload": {"foo": "bar"}})),
        ChatMessage("tool", '{"payload": {"foo": "bar"}}', tool_name="echo"),
    ]
    assert render("qwen3-coder", echo, (), None) == (
        "<|im_start|>user\ncall tool<|im_end|>\n<|im_start|>assistant\n\n<tool_call>\n"
        '<function=echo>\n<parameter=payload>\n{"foo":"bar"}\n</parameter>\n</function>\n'
        '</tool_call><|im_end|>\n<|im_start|>user\n<tool_response>\n{"payload": {"foo": '
        '"bar"}}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    )


@pytest.mark.parametrize(
    ("value", "text"), [("foo", "foo"), ({"foo": "bar"}, '{"foo":"bar"}'), (1, "1"), (True, "true")]
)
def test_call_arguments_as_qwen_writes_them(value, text):
    from ollamacli.engine.renderers import argument_text

    assert argument_text(value) == text
