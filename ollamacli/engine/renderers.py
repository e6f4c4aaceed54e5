"""Ollama's built-in renderers (model/renderers/), for models whose config names a RENDERER.

Ollama renders these families in Go code rather than with a template (cogito, deepseek3.1,
olmo3, olmo3.1, olmo3-think, olmo3-32b-think, qwen3.5, qwen3-coder); the prompt text below
follows the same rules, so that a model created with `RENDERER cogito` (or pulled with that
config) sees exactly the prompt Ollama would give it. Renderers not written here render with
the GGUF's own Jinja template (engine/reasoning.py lists the names accepted).

JSON inside prompts is written as Go's encoding/json writes it: `<`, `>` and `&` escaped,
struct fields in Ollama's order (api.Tool, api.ToolProperty), tool properties and call
arguments in the order they came (Ollama keeps them in ordered maps), other objects with
their keys sorted (Go maps).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence

from ollamacli.engine.base import ChatMessage, ToolCall
from ollamacli.engine.thinking import ThinkValue, think_enabled

ToolSpec = Mapping[str, object]
Renderer = Callable[[Sequence[ChatMessage], Sequence[ToolSpec], ThinkValue], str]

# DeepSeek's markers are spelled with full-width bars and a "▁" for spaces.
BOS = "<｜begin▁of▁sentence｜>"  # noqa: RUF001
EOS = "<｜end▁of▁sentence｜>"  # noqa: RUF001
USER, ASSISTANT = "<｜User｜>", "<｜Assistant｜>"  # noqa: RUF001
CALLS_BEGIN, CALLS_END = "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>"  # noqa: RUF001
CALL_BEGIN, CALL_END = "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>"  # noqa: RUF001
CALL_SEP = "<｜tool▁sep｜>"  # noqa: RUF001
OUTPUTS_BEGIN, OUTPUTS_END = "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>"  # noqa: RUF001
OUTPUT_BEGIN, OUTPUT_END = "<｜tool▁output▁begin｜>", "<｜tool▁output▁end｜>"  # noqa: RUF001


def _html_safe(text: str) -> str:
    """Go's encoding/json escapes these in every string it writes."""
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def go_json(value: object, *, indent: int | None = None) -> str:
    """`value` as json.Marshal (or MarshalIndent with `indent` spaces) writes it: objects
    are Go maps, their keys sorted."""
    separators = (",", ": ") if indent is not None else (",", ":")
    text = json.dumps(
        value, ensure_ascii=False, indent=indent, separators=separators, sort_keys=True
    )
    return _html_safe(text)


def arguments_json(arguments: Mapping[str, object]) -> str:
    """Tool-call arguments as Ollama marshals them: its own keys in the order they came
    (an ordered map), the values inside as Go maps."""
    items = (f"{go_json(key)}:{go_json(value)}" for key, value in arguments.items())
    return "{" + ",".join(items) + "}"


def _sorted(value: object) -> object:
    """A decoded JSON value as Go's `any` marshals it: object keys sorted."""
    if isinstance(value, Mapping):
        return {str(k): _sorted(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _property_json(spec: object) -> dict[str, object]:
    """A JSON-schema property as Ollama's api.ToolProperty marshals (all omitempty; one type
    is a string, several a list; nested properties keep their order)."""
    spec = spec if isinstance(spec, Mapping) else {}
    out: dict[str, object] = {}
    if isinstance(spec.get("anyOf"), list) and spec["anyOf"]:
        out["anyOf"] = [_property_json(p) for p in spec["anyOf"]]
    kind = spec.get("type")
    if isinstance(kind, list) and kind:
        out["type"] = kind[0] if len(kind) == 1 else kind
    elif isinstance(kind, str) and kind:
        out["type"] = kind
    for key in ("items", "description", "enum"):
        if spec.get(key):
            out[key] = _sorted(spec[key])
    nested = spec.get("properties")
    if isinstance(nested, Mapping) and nested:
        out["properties"] = {str(k): _property_json(v) for k, v in nested.items()}
    if spec.get("required"):
        out["required"] = spec["required"]
    return out


def _tool_json(tool: ToolSpec) -> dict[str, object]:
    """A request tool as Ollama's api.Tool marshals: fields in struct order, properties in
    the order they came (an ordered map), other schema values as Go maps."""
    function = tool.get("function")
    function = function if isinstance(function, Mapping) else {}
    params = function.get("parameters")
    params = params if isinstance(params, Mapping) else {}
    parameters: dict[str, object] = {"type": params.get("type") or ""}
    for key in ("$defs", "items", "required"):
        if params.get(key):
            parameters[key] = _sorted(params[key])
    properties = params.get("properties")
    parameters["properties"] = (
        {str(k): _property_json(v) for k, v in properties.items()}
        if isinstance(properties, Mapping)
        else None
    )
    body: dict[str, object] = {"name": function.get("name") or ""}
    if function.get("description"):
        body["description"] = function["description"]
    body["parameters"] = parameters
    out: dict[str, object] = {"type": tool.get("type") or ""}
    if tool.get("items"):
        out["items"] = _sorted(tool["items"])
    out["function"] = body
    return out


def _struct_json(value: object, *, indent: int | None = None) -> str:
    """A struct made by `_tool_json` (already in field order), marshalled as Go does."""
    separators = (",", ": ") if indent is not None else (",", ":")
    return _html_safe(json.dumps(value, ensure_ascii=False, indent=indent, separators=separators))


def _name(tool: ToolSpec) -> str:
    function = tool.get("function")
    return str(function.get("name", "")) if isinstance(function, Mapping) else ""


def _description(tool: ToolSpec) -> str:
    function = tool.get("function")
    return str(function.get("description") or "") if isinstance(function, Mapping) else ""


COGITO_PROMPT = (
    "You are Cogito, an AI assistant created by Deep Cogito, which is an AI research lab "
    "based in San Francisco."
)


def render_cogito(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], think: ThinkValue
) -> str:
    """Cogito (DeepSeek-style markers): the system prompt is Cogito's own, led by "Enable deep
    thinking subroutine." when thinking, then the request's system text and the tools as
    indented JSON blocks; the prompt opens `<think>` when thinking."""
    thinking = think_enabled(think)
    system = ""
    turns = list(messages)
    if turns and turns[0].role == "system":
        system, turns = turns[0].content, turns[1:]
    out = [BOS + _cogito_system(system, tools, thinking=thinking), *_cogito_turns(turns)]
    roles = [m.role for m in turns if m.role in ("user", "assistant", "tool")]
    if not roles or roles[-1] != "user":
        out.append(ASSISTANT)
    if thinking:
        out.append("<think>\n")
    return "".join(out)


def _cogito_system(system: str, tools: Sequence[ToolSpec], *, thinking: bool) -> str:
    if thinking:
        prompt = "Enable deep thinking subroutine.\n\n" + COGITO_PROMPT
        prompt += f"\n\n{system}\n\n" if system else ""
    else:
        prompt = COGITO_PROMPT + (f"\n\n{system}" if system else "")
    if tools:
        prompt += "\nYou have the following functions available:\n"
        for tool in tools:
            prompt += "```json\n" + _struct_json(_tool_json(tool), indent=4) + "\n```\n"
    return prompt


def _cogito_turns(turns: Sequence[ChatMessage]) -> list[str]:
    out: list[str] = []
    outputs_open = False
    for index, message in enumerate(turns):
        if message.role == "user":
            out.append(USER + message.content + ASSISTANT)
        elif message.role == "assistant" and message.tool_calls:
            calls = [
                f"{CALL_BEGIN}function{CALL_SEP}{call.name}\n```json\n"
                f"{arguments_json(call.arguments)}\n```{CALL_END}"
                for call in message.tool_calls
            ]
            out.append(message.content + CALLS_BEGIN + "\n".join(calls) + CALLS_END + EOS)
        elif message.role == "assistant":
            out.append(message.content + EOS)
        elif message.role == "tool":
            if not outputs_open:
                out.append(OUTPUTS_BEGIN)
                outputs_open = True
            out.append(OUTPUT_BEGIN + message.content + OUTPUT_END)
            if index + 1 < len(turns) and turns[index + 1].role == "tool":
                out.append("\n")
            else:
                out.append(OUTPUTS_END)
                outputs_open = False
    if outputs_open:
        out.append(OUTPUTS_END)
    return out


DEEPSEEK_TOOL_USAGE = (
    "\nIMPORTANT: ALWAYS adhere to this exact format for tool use:\n"
    f"{CALLS_BEGIN}{CALL_BEGIN}tool_call_name{CALL_SEP}tool_call_arguments{CALL_END}"
    "{{additional_tool_calls}}" + CALLS_END + "\n\n"
    "Where:\n\n"
    "- `tool_call_name` must be an exact match to one of the available tools\n"
    "- `tool_call_arguments` must be valid JSON that strictly follows the tool's Parameters "
    "Schema\n"
    "- For multiple tool calls, chain them directly without separators or spaces\n"
)


def render_deepseek31(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], think: ThinkValue
) -> str:
    """DeepSeek V3.1: every system text first, then the tools (name, description, parameters
    JSON) with the call format; each answer opens with `<think>` (thinking, current turn
    only) or a bare `</think>` (not thinking); an earlier answer keeps only what follows its
    `</think>`."""
    thinking = think_enabled(think)
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    out = [BOS, system, _deepseek_tools(tools)]
    last_user_index = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    is_tool = last_user = False
    for index, message in enumerate(messages):
        if message.role == "user":
            is_tool, last_user = False, True
            out.append(USER + message.content)
        elif message.role == "assistant" and message.tool_calls:
            if last_user:
                out.append(ASSISTANT + "</think>")
            is_tool = last_user = False
            calls = "".join(
                f"{CALL_BEGIN}{call.name}{CALL_SEP}{arguments_json(call.arguments)}{CALL_END}"
                for call in message.tool_calls
            )
            out.append(message.content + CALLS_BEGIN + calls + CALLS_END + EOS)
        elif message.role == "assistant":
            if last_user:
                opens = bool(message.thinking) and thinking and index > last_user_index
                out.append(ASSISTANT + ("<think>" if opens else "</think>"))
            last_user = False
            out.append(_deepseek_answer(message.content, after_tool=is_tool) + EOS)
            is_tool = False
        elif message.role == "tool":
            is_tool, last_user = True, False
            out.append(OUTPUT_BEGIN + message.content + OUTPUT_END)
    if last_user and not is_tool:
        out.append(ASSISTANT + ("<think>" if thinking else "</think>"))
    return "".join(out)


def _deepseek_tools(tools: Sequence[ToolSpec]) -> str:
    if not tools:
        return ""
    out = ["\n\n## Tools\nYou have access to the following tools:\n"]
    for tool in tools:
        function = _tool_json(tool)["function"]
        assert isinstance(function, dict)
        schema = _struct_json(function["parameters"])
        out.append(f"\n### {_name(tool)}\nDescription: {_description(tool)}")
        out.append(f"\n\nParameters: {schema}\n")
    out.append(DEEPSEEK_TOOL_USAGE)
    return "".join(out)


def _deepseek_answer(content: str, *, after_tool: bool) -> str:
    """An answer without what precedes its first `</think>` (kept whole after a tool)."""
    if not after_tool and "</think>" in content:
        return content.split("</think>", 1)[1]
    return content


OLMO3_THINK_SUFFIX = " You do not currently have access to any functions. <functions></functions>"
OLMO3_THINK_32B_SYSTEM = "You are a helpful AI assistant."
OLMO31_SYSTEM = (
    "You are Olmo, a helpful AI assistant built by Ai2. Your date cutoff is December 2024, "
    "and your model weights are available at https://huggingface.co/allenai."
)


def _olmo3_think(default_system: str) -> Renderer:
    def render(
        messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], think: ThinkValue
    ) -> str:
        """OLMo 3 Think: the first system text (with a no-functions note) or the variant's
        default, user and assistant turns in ChatML (tool turns are left out), and the answer
        opened with `<think>`."""
        system = next((m.content for m in messages if m.role == "system"), None)
        out = ["<|im_start|>system\n"]
        out.append(default_system if system is None else system + OLMO3_THINK_SUFFIX)
        out.append("<|im_end|>\n")
        for message in messages:
            if message.role in ("user", "assistant"):
                out.append(f"<|im_start|>{message.role}\n{message.content}<|im_end|>\n")
        out.append("<|im_start|>assistant\n<think>")
        return "".join(out)

    return render


OLMO3_SYSTEM = "You are a helpful function-calling AI assistant. "
OLMO31_INSTRUCT_SYSTEM = OLMO31_SYSTEM + " "
OLMO3_NO_FUNCTIONS = "You do not currently have access to any functions. "
OLMO3_WITH_FUNCTIONS = (
    "You are provided with function signatures within <functions></functions> XML tags. You "
    "may call one or more functions to assist with the user query. Output any function calls "
    "within <function_calls></function_calls> XML tags. Do not make assumptions about what "
    "values to plug into functions."
)


def with_spaces(text: str) -> str:
    """Compact JSON with a space after each `:` and `,` outside strings (Ollama's
    marshalWithSpaces)."""
    out: list[str] = []
    in_string = escaped = False
    for char in text:
        out.append(char)
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in ":,":
            out.append(" ")
    return "".join(out)


def _olmo3(default_system: str) -> Renderer:
    def render(
        messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], think: ThinkValue
    ) -> str:
        """OLMo 3 instruct: the system text (or the default with a functions note) and the
        tools as spaced JSON in `<functions>`, ChatML turns, calls as `name(key=value)` in
        `<function_calls>`, tool results as `environment` turns; a last answer with content
        is a prefill."""
        system = next((m.content for m in messages if m.role == "system"), None)
        turns = [m for m in messages if m.role != "system"]
        out = ["<|im_start|>system\n", _olmo3_system(system, tools, default_system)]
        out.append("<|im_end|>\n")
        for index, message in enumerate(turns):
            last = index == len(turns) - 1
            if message.role == "user":
                out.append(f"<|im_start|>user\n{message.content}<|im_end|>\n")
            elif message.role == "assistant":
                out.append(f"<|im_start|>assistant\n{message.content}")
                if message.tool_calls:
                    calls = "\n".join(_olmo3_call(call) for call in message.tool_calls)
                    out.append(f"<function_calls>{calls}</function_calls>")
                if not last or message.tool_calls:
                    out.append("<|im_end|>\n")
            elif message.role == "tool":
                out.append(f"<|im_start|>environment\n{message.content}<|im_end|>\n")
        prefill = turns and turns[-1].role == "assistant" and not turns[-1].tool_calls
        if not (prefill and turns[-1].content):
            out.append("<|im_start|>assistant\n")
        return "".join(out)

    return render


def _olmo3_system(system: str | None, tools: Sequence[ToolSpec], default: str) -> str:
    functions = with_spaces(_struct_json([_tool_json(t) for t in tools])) if tools else ""
    if system is not None:
        return system + (f"<functions>{functions}</functions>" if tools else "")
    if tools:
        return f"{default}{OLMO3_WITH_FUNCTIONS}<functions>{functions}</functions>"
    return f"{default}{OLMO3_NO_FUNCTIONS}<functions></functions>"


def _olmo3_call(call: ToolCall) -> str:
    """`name(key=value, ...)`, keys sorted, values as JSON."""
    arguments = ", ".join(f"{key}={go_json(call.arguments[key])}" for key in sorted(call.arguments))
    return f"{call.name}({arguments})"


QWEN_TOOL_FORMAT = """If you choose to call a function ONLY reply in the following format with NO suffix:

<tool_call>
<function=example_function_name>
<parameter=example_parameter_1>
value_1
</parameter>
<parameter=example_parameter_2>
This is the value for the second parameter
that can span
multiple lines
</parameter>
</function>
</tool_call>

<IMPORTANT>
Reminder:
- Function calls MUST follow the specified format: an inner <function=...></function> block \
must be nested within <tool_call></tool_call> XML tags
- Required parameters MUST be specified
- You may provide optional reasoning for your function call in natural language BEFORE the \
function call, but NOT after
- If there is no function call available, answer the question like normal with your current \
knowledge and do not tell the user about function calls
</IMPORTANT>"""


def argument_text(value: object) -> str:
    """A call argument as Qwen's XML calls write it (Ollama's formatToolCallArgument): text
    as it is, lists and objects as JSON, null as `null`, other values as Go prints them."""
    from ollamacli.engine.goexec import format_value

    if value is None:
        return "null"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        return go_json(value)
    return format_value(value)


def _qwen_call(call: ToolCall) -> str:
    """`<tool_call><function=NAME><parameter=KEY>VALUE</parameter>...` (arguments in order)."""
    parameters = "".join(
        f"\n<parameter={key}>\n{argument_text(value)}\n</parameter>"
        for key, value in call.arguments.items()
    )
    return f"<tool_call>\n<function={call.name}>{parameters}\n</function>\n</tool_call>"


def _is_tool_response(message: ChatMessage) -> bool:
    text = message.content.strip()
    return text.startswith("<tool_response>") and text.endswith("</tool_response>")


def _qwen35_reasoning(message: ChatMessage, content: str, *, shown: bool) -> tuple[str, str]:
    """The trace to show in an assistant turn and the content left: the turn's `thinking`,
    else a trace written in the content before `</think>`."""
    if shown and message.thinking:
        return message.thinking.strip(), content
    index = content.find("</think>")
    if index == -1:
        return "", content
    before = content[:index]
    opening = before.rfind("<think>")
    reasoning = before[opening + len("<think>") :] if opening != -1 else before
    return reasoning.strip(), content[index + len("</think>") :].lstrip("\n")


def render_qwen35(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], think: ThinkValue
) -> str:
    """Qwen 3.5: ChatML; tools as spaced JSON lines in `<tools>` with the XML call format,
    the system text after them; traces shown only for turns after the last real question;
    calls as `<function=...>` blocks; a thinking answer opens `<think>`, a non-thinking one
    gets an empty trace."""
    thinking = True if think is None else think_enabled(think)
    out: list[str] = []
    system = messages[0].content.strip() if messages and messages[0].role == "system" else None
    if tools:
        lines = "".join("\n" + with_spaces(_struct_json(_tool_json(t))) for t in tools)
        out.append(
            "<|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n"
            f"<tools>{lines}\n</tools>\n\n{QWEN_TOOL_FORMAT}"
        )
        out.append(f"\n\n{system}" if system else "")
        out.append("<|im_end|>\n")
    elif system is not None:
        out.append(f"<|im_start|>system\n{system}<|im_end|>\n")
    last_query = next(
        (
            i
            for i in range(len(messages) - 1, -1, -1)
            if messages[i].role == "user" and not _is_tool_response(messages[i])
        ),
        len(messages) - 1,
    )
    for index, message in enumerate(messages):
        out.append(_qwen35_turn(messages, index, shown=thinking and index > last_query))
        if index == len(messages) - 1 and message.role != "assistant":
            opening = "<think>\n" if thinking else "<think>\n\n</think>\n\n"
            out.append("<|im_start|>assistant\n" + opening)
    return "".join(out)


def _qwen35_turn(messages: Sequence[ChatMessage], index: int, *, shown: bool) -> str:
    message = messages[index]
    content = message.content.strip()
    last = index == len(messages) - 1
    if message.role == "user" or (message.role == "system" and index != 0):
        return f"<|im_start|>{message.role}\n{content}<|im_end|>\n"
    if message.role == "assistant":
        reasoning, content = _qwen35_reasoning(message, content, shown=shown)
        trace = f"<think>\n{reasoning}\n</think>\n\n" if shown else ""
        out = [f"<|im_start|>assistant\n{trace}{content}"]
        for number, call in enumerate(message.tool_calls):
            if number:
                out.append("\n")
            elif content.strip():
                out.append("\n\n")
            out.append(_qwen_call(call))
        if not last:
            out.append("<|im_end|>\n")
        return "".join(out)
    if message.role == "tool":
        first = index == 0 or messages[index - 1].role != "tool"
        closes = last or messages[index + 1].role != "tool"
        return (
            ("<|im_start|>user" if first else "")
            + f"\n<tool_response>\n{content}\n</tool_response>"
            + ("<|im_end|>\n" if closes else "")
        )
    return ""


QWEN3_CODER_SYSTEM = (
    "You are Qwen, a helpful AI assistant that can interact with a computer to solve tasks."
)


def _extra_keys(value: Mapping[str, object], handled: frozenset[str]) -> str:
    """The fields of a marshalled struct other than `handled`, as `<key>value</key>` lines:
    objects and lists as JSON, null skipped (Go ranges over a map here, in no set order;
    these come sorted)."""
    out = []
    for key in sorted(value):
        item = value[key]
        if key in handled or item is None:
            continue
        text = go_json(item) if isinstance(item, (dict, list)) else argument_text(item)
        out.append(f"\n<{key}>{text}</{key}>")
    return "".join(out)


def _coder_tool(tool: ToolSpec) -> str:
    function = _tool_json(tool)["function"]
    assert isinstance(function, dict)
    parameters = function["parameters"]
    out = [f"\n<function>\n<name>{function['name']}</name>"]
    if function.get("description"):
        out.append(f"\n<description>{function['description']}</description>")
    out.append("\n<parameters>")
    for name, prop in (parameters.get("properties") or {}).items():
        out.append(f"\n<parameter>\n<name>{name}</name>")
        kind = prop.get("type")
        if kind:
            out.append(f"\n<type>{kind if isinstance(kind, str) else go_json(kind)}</type>")
        if prop.get("description"):
            out.append(f"\n<description>{prop['description']}</description>")
        out.append(_extra_keys(prop, frozenset({"type", "description"})))
        out.append("\n</parameter>")
    out.append(_extra_keys(parameters, frozenset({"type", "properties"})))
    out.append("\n</parameters>\n</function>")
    return "".join(out)


def render_qwen3_coder(
    messages: Sequence[ChatMessage], tools: Sequence[ToolSpec], think: ThinkValue
) -> str:
    """Qwen 3 Coder: the first system text (Qwen's default when there are tools but none),
    tools as XML `<function>` descriptions with the XML call format, calls as
    `<function=...>` blocks, consecutive tool results in one user turn."""
    system = next((m.content for m in messages if m.role == "system"), "")
    turns = [m for m in messages if m.role != "system"]
    out: list[str] = []
    if system or tools:
        out.append("<|im_start|>system\n" + (system or QWEN3_CODER_SYSTEM))
        if tools:
            descriptions = "".join(_coder_tool(tool) for tool in tools)
            out.append(
                "\n\n# Tools\n\nYou have access to the following functions:\n\n"
                f"<tools>{descriptions}\n</tools>\n\n{QWEN_TOOL_FORMAT}"
            )
        out.append("<|im_end|>\n")
    for index, message in enumerate(turns):
        last = index == len(turns) - 1
        if message.role == "assistant" and message.tool_calls:
            out.append(
                "<|im_start|>assistant\n" + (f"{message.content}\n" if message.content else "")
            )
            out.extend("\n" + _qwen_call(call) for call in message.tool_calls)
            out.append("<|im_end|>\n")
        elif message.role == "assistant":
            out.append(f"<|im_start|>assistant\n{message.content}")
            out.append("" if last else "<|im_end|>\n")
        elif message.role == "tool":
            if index == 0 or turns[index - 1].role != "tool":
                out.append("<|im_start|>user")
            out.append(f"\n<tool_response>\n{message.content}\n</tool_response>")
            if last or turns[index + 1].role != "tool":
                out.append("<|im_end|>\n")
        else:
            out.append(f"<|im_start|>{message.role}\n{message.content}<|im_end|>\n")
        if last and message.role != "assistant":
            out.append("<|im_start|>assistant\n")
    return "".join(out)


RENDERERS: dict[str, Renderer] = {
    "cogito": render_cogito,
    "deepseek3.1": render_deepseek31,
    "olmo3": _olmo3(OLMO3_SYSTEM),
    "olmo3.1": _olmo3(OLMO31_INSTRUCT_SYSTEM),
    "olmo3-think": _olmo3_think(OLMO31_SYSTEM),
    "olmo3-32b-think": _olmo3_think(OLMO3_THINK_32B_SYSTEM),
    "qwen3.5": render_qwen35,
    "qwen3-coder": render_qwen3_coder,
}
"""The renderers written here, by Ollama's name."""


def render(
    name: str,
    messages: Sequence[ChatMessage],
    tools: Sequence[ToolSpec] = (),
    think: ThinkValue = None,
) -> str:
    """The prompt Ollama's renderer `name` makes of a conversation (KeyError if unknown)."""
    return RENDERERS[name](messages, tools, think)
