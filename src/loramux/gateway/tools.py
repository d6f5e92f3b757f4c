"""Tool calling, engine-neutral: check the request's tools, render them into the prompt, and
turn what the model wrote back into OpenAI `tool_calls`.

The base model's chat template (SmolLM2's is plain ChatML) knows nothing of tools, so loramux
renders them the way ChatML models trained for tools read them (the Hermes / Qwen2.5 format):
the function signatures in a `<tools>` block of the system message, each call the model makes
as `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, each result as a user turn in
`<tool_response>` tags. Engines therefore only ever see system, user and assistant text.

`tool_choice` `required` or a named function does not trust the model: the reply is decoded
under a JSON schema (`SamplingParams.structured`) so it is always a valid call whose arguments
match the function's `parameters`. With `auto` the model decides; a `<tool_call>` block whose
JSON does not parse, names no known function, or (for a `strict` function) does not match its
parameters stays plain text content.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from loramux.errors import InvalidRequestError
from loramux.serve.types import StructuredOutput
from loramux.types import ChatMessage, ToolCall

NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}

SYSTEM_TEMPLATE = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{signatures}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


@dataclass(frozen=True)
class FunctionTool:
    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=lambda: dict(EMPTY_PARAMETERS))
    strict: bool = False

    def signature(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name}
        if self.description:
            function["description"] = self.description
        function["parameters"] = self.parameters
        return {"type": "function", "function": function}


ChoiceMode = Literal["none", "auto", "required", "function"]


@dataclass(frozen=True)
class ToolsInput:
    """The request's `tools`, `tool_choice` and `parallel_tool_calls`."""

    tools: tuple[FunctionTool, ...] = ()
    choice: ChoiceMode = "auto"
    function: str | None = None
    """The function `tool_choice` names (`choice == "function"`)."""
    parallel: bool = True

    @property
    def active(self) -> bool:
        """True when the model may (or must) call a tool in this reply."""
        return bool(self.tools) and self.choice != "none"

    @property
    def forced(self) -> bool:
        """True when the reply must be a call (`required` or a named function)."""
        return self.active and self.choice in ("required", "function")

    def by_name(self) -> dict[str, FunctionTool]:
        return {t.name: t for t in self.tools}

    def forced_tools(self) -> tuple[FunctionTool, ...]:
        if self.choice == "function":
            return tuple(t for t in self.tools if t.name == self.function)
        return self.tools


def check_schema(schema: Any, param: str) -> None:
    """Refuse what is not a JSON Schema (Draft 2020-12) object.

    Raises:
        InvalidRequestError: naming `param`.
    """
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    if not isinstance(schema, dict):
        raise InvalidRequestError(f"`{param}` must be a JSON Schema object", param=param)
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise InvalidRequestError(
            f"`{param}` is not a valid JSON Schema: {exc.message}"
            + (f" (at {where})" if where else ""),
            param=param,
        ) from None


def check(tools: ToolsInput, messages: Sequence[ChatMessage]) -> None:
    """Refuse tools and tool turns that cannot be served as asked.

    Raises:
        InvalidRequestError: a bad or duplicate function name, parameters that are not a JSON
            Schema object, a `tool_choice` naming no function in `tools` (or any forced choice
            without tools), a `tool` message answering no earlier call.
    """
    seen: set[str] = set()
    for i, tool in enumerate(tools.tools):
        param = f"tools.{i}.function.name"
        if not NAME_RE.match(tool.name):
            raise InvalidRequestError(
                f"tool name {tool.name!r} is invalid: use 1 to 64 letters, digits, _ or -",
                param=param,
            )
        if tool.name in seen:
            raise InvalidRequestError(f"two tools are named {tool.name!r}", param=param)
        seen.add(tool.name)
        check_schema(tool.parameters, f"tools.{i}.function.parameters")
        if tool.parameters.get("type", "object") != "object":
            raise InvalidRequestError(
                f"the parameters of tool {tool.name!r} must be a JSON Schema of type object",
                param=f"tools.{i}.function.parameters",
            )
    if tools.choice in ("required", "function") and not tools.tools:
        raise InvalidRequestError(
            f"tool_choice {tools.choice if tools.choice == 'required' else 'naming a function'} "
            "needs `tools`",
            param="tool_choice",
        )
    if tools.choice == "function" and tools.function not in seen:
        raise InvalidRequestError(
            f"tool_choice names function {tools.function!r}, which is not in `tools` "
            f"({', '.join(sorted(seen)) or 'none'})",
            param="tool_choice",
        )
    calls: set[str] = set()
    for i, message in enumerate(messages):
        calls.update(c.id for c in message.tool_calls)
        if message.role == "tool" and message.tool_call_id not in calls:
            raise InvalidRequestError(
                f"message {i} is a tool result for call {message.tool_call_id!r}, which no "
                "earlier assistant message made",
                param=f"messages.{i}.tool_call_id",
            )


def forced_schema(tools: ToolsInput) -> str | None:
    """The JSON schema a forced reply is decoded under (canonical JSON), None unless forced.

    One function: its `parameters` (the reply is the arguments). Several (`required`): an
    object `{"name": <one of them>, "arguments": <its parameters>}`.
    """
    if not tools.forced:
        return None
    candidates = tools.forced_tools()
    if len(candidates) == 1:
        schema: dict[str, Any] = candidates[0].parameters
    else:
        schema = {
            "anyOf": [
                {
                    "type": "object",
                    "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                    "required": ["name", "arguments"],
                    "additionalProperties": False,
                }
                for t in candidates
            ]
        }
    return json.dumps(schema, separators=(",", ":"))


def reply_format(
    tools: ToolsInput | None, response_format: StructuredOutput | None
) -> StructuredOutput | None:
    """What a reply is decoded under: a forced tool call's schema, else the `response_format`.

    Raises:
        InvalidRequestError: `response_format` JSON with tools the model may or may not call
            (`tool_choice: auto`): one reply cannot be held to both.
    """
    if tools is not None and tools.forced:
        return StructuredOutput(forced_schema(tools))
    if tools is not None and tools.active and response_format is not None:
        raise InvalidRequestError(
            "response_format json with tools and tool_choice auto is not supported: the reply "
            "would have to be a tool call or JSON content; send tool_choice `required` (or a "
            "function) to get a call, or `none` to get JSON",
            param="response_format",
        )
    return response_format


def render(
    messages: Sequence[ChatMessage], tools: ToolsInput | None, instruction: str | None = None
) -> tuple[ChatMessage, ...]:
    """The conversation as plain system / user / assistant text (see the module docstring).

    Tools are described in the system message when the model may call them; past calls and
    their results are rendered whatever `tool_choice` says, so the model sees the history.
    `instruction` (what a `json_schema` response format is for) ends the system message.
    """
    out: list[ChatMessage] = []
    for message in messages:
        if message.role == "tool":
            block = f"<tool_response>\n{message.content}\n</tool_response>"
            last = out[-1] if out else None
            if (
                last is not None
                and last.role == "user"
                and last.content.startswith("<tool_response>")
            ):
                out[-1] = ChatMessage("user", f"{last.content}\n{block}")
            else:
                out.append(ChatMessage("user", block))
        elif message.tool_calls:
            calls = "\n".join(
                f"{OPEN}\n{json.dumps({'name': c.name, 'arguments': _arguments(c)})}\n{CLOSE}"
                for c in message.tool_calls
            )
            text = f"{message.content}\n{calls}" if message.content else calls
            out.append(ChatMessage("assistant", text))
        else:
            out.append(ChatMessage(message.role, message.content))
    if tools is not None and tools.active:
        signatures = "\n".join(
            json.dumps(t.signature(), ensure_ascii=False) for t in tools.forced_tools()
        )
        _add_to_system(out, SYSTEM_TEMPLATE.format(signatures=signatures))
    if instruction:
        _add_to_system(out, instruction)
    return tuple(out)


def _add_to_system(out: list[ChatMessage], block: str) -> None:
    """Append `block` to the system message (one: many chat templates accept only one)."""
    if out and out[0].role == "system":
        out[0] = ChatMessage("system", f"{out[0].content}\n\n{block}")
    else:
        out.insert(0, ChatMessage("system", block))


def _arguments(call: ToolCall) -> Any:
    try:
        return json.loads(call.arguments)
    except ValueError:
        return call.arguments


def new_call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def parse_forced(text: str, tools: ToolsInput) -> list[ToolCall]:
    """The call a forced reply (decoded under `forced_schema`) makes; [] when the text is not
    complete JSON (the reply hit max_tokens first)."""
    try:
        value = json.loads(text)
    except ValueError:
        return []
    candidates = tools.forced_tools()
    if len(candidates) == 1:
        return [ToolCall(new_call_id(), candidates[0].name, json.dumps(value))]
    if not isinstance(value, dict) or value.get("name") not in {t.name for t in candidates}:
        return []
    return [ToolCall(new_call_id(), value["name"], json.dumps(value.get("arguments", {})))]


def parse_auto(text: str, tools: ToolsInput) -> tuple[str, list[ToolCall]]:
    """Split a free reply into content and the valid `<tool_call>` blocks it holds.

    Returns:
        (content, calls): with no valid call, the whole text is content. With
        `parallel_tool_calls: false` only the first call is kept.
    """
    if OPEN not in text:
        return text, []
    known = tools.by_name()
    calls: list[ToolCall] = []
    for match in _BLOCK.finditer(text):
        call = _parse_block(match.group(1), known)
        if call is None:
            return text, []
        calls.append(call)
    if not calls:
        return text, []
    content = _BLOCK.sub("", text).strip()
    return content, calls[:1] if not tools.parallel else calls


def _parse_block(body: str, known: dict[str, FunctionTool]) -> ToolCall | None:
    try:
        value = json.loads(body)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("name") not in known:
        return None
    arguments = value.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    tool = known[value["name"]]
    if tool.strict and not _valid(arguments, tool.parameters):
        return None
    return ToolCall(new_call_id(), tool.name, json.dumps(arguments))


def _valid(value: Any, schema: dict[str, Any]) -> bool:
    from jsonschema import Draft202012Validator

    return bool(Draft202012Validator(schema).is_valid(value))


@dataclass
class StreamEvent:
    """What a streamed reply adds: content text, or a call (started, or more arguments)."""

    content: str = ""
    call_index: int | None = None
    call: ToolCall | None = None
    """Set on a call's first event (its id and name; arguments may follow)."""
    arguments: str = ""


class ToolStream:
    """Turns a streamed reply into content deltas and `tool_calls` deltas.

    Forced with one function: the reply is the arguments, streamed as they come. Forced with
    several: the call is sent whole once the JSON is complete. `auto`: text is content until
    something that may open a `<tool_call>` block; from there it is held and parsed at the end
    (content again if it holds no valid call).
    """

    def __init__(self, tools: ToolsInput) -> None:
        self.tools = tools
        self.text = ""
        self.sent = 0
        """How much of `text` went out as content (auto) or arguments (forced, one function)."""
        self.calls: list[ToolCall] = []

    @property
    def called(self) -> bool:
        return bool(self.calls)

    def feed(self, piece: str) -> list[StreamEvent]:
        self.text += piece
        candidates = self.tools.forced_tools()
        if self.tools.forced:
            if len(candidates) != 1:
                return []
            events = []
            if not self.calls:
                self.calls.append(ToolCall(new_call_id(), candidates[0].name, ""))
                events.append(StreamEvent(call_index=0, call=self.calls[0]))
            if piece:
                events.append(StreamEvent(call_index=0, arguments=piece))
            self.sent = len(self.text)
            return events
        held = _held_from(self.text)
        if held > self.sent:
            out = self.text[self.sent : held]
            self.sent = held
            return [StreamEvent(content=out)]
        return []

    def finish(self) -> list[StreamEvent]:
        if self.tools.forced:
            if len(self.tools.forced_tools()) == 1:
                if not self.calls:  # an empty reply: still a call, with what was written
                    self.calls.append(
                        ToolCall(new_call_id(), self.tools.forced_tools()[0].name, "")
                    )
                    return [StreamEvent(call_index=0, call=self.calls[0])]
                return []
            self.calls = parse_forced(self.text, self.tools)
            return [
                StreamEvent(call_index=i, call=c, arguments=c.arguments)
                for i, c in enumerate(self.calls)
            ]
        rest = self.text[self.sent :]
        if not rest:
            return []
        content, calls = parse_auto(rest, self.tools)
        self.sent = len(self.text)
        if not calls:
            return [StreamEvent(content=rest)]
        self.calls = calls
        events = [
            StreamEvent(call_index=i, call=c, arguments=c.arguments) for i, c in enumerate(calls)
        ]
        return ([StreamEvent(content=content)] if content else []) + events


def _held_from(text: str) -> int:
    """Where the text stops being sure content: at `<tool_call>`, or at a tail that could
    still become it."""
    at = text.find(OPEN)
    if at >= 0:
        return at
    for k in range(min(len(OPEN) - 1, len(text)), 0, -1):
        if OPEN.startswith(text[-k:]):
            return len(text) - k
    return len(text)
