"""A chat request with tools, as a prompt, a grammar and a parser for the reply.

Models whose template knows tools were trained on their family's call format; the bundled
SmolLM2 and most small models know none. Either way the tools are described in a system
message (the tool-use prompt below, written in the family's call format), tool calls in the
history are written back in that format, and tool results become user turns wrapped in
`<tool_response>`, so every chat format, transcripts included, can carry a tool
conversation. Under `required` or a named function a grammar forces a well-formed call to
one of the allowed tools with arguments matching its parameters, so even a 135M model
always calls validly. Under `auto` the model chooses: its text is free until it writes the
family's call opener, and from there the same grammar holds (a lazy grammar), so a call it
starts is a valid call too. (Bare-JSON families have no opener to wait for: their calls
under `auto` are parsed as written.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hearth.prompts.base import Message
from hearth.server.protocol import ChatCompletionRequest, ChatMessage, NamedToolChoice
from hearth.server.structured.grammar import schema_grammar
from hearth.server.tools.formats import CallFormat, ParsedCall, call_format_for

TOOL_PROMPT = """You can call these tools (JSON schemas of their arguments):
{tools}

To call a tool, reply with exactly this and nothing else:
{example}
{when}"""

WHEN = {
    "auto": "Call a tool only when it helps answer; otherwise reply in plain text.",
    "required": "You must call a tool now.",
}
# The grammar's rule for one call's JSON; renamed from the schema compiler's `root`.
CALL_RULE = "tool-call-json"


@dataclass(frozen=True)
class ToolPlan:
    messages: list[Message]
    call_format: CallFormat
    grammar: str | None  # set when a call is forced or may start (see grammar_trigger)
    active: bool  # whether the reply is parsed for calls
    grammar_trigger: str | None = None  # under `auto`: the grammar starts at this text


def plan_tools(request: ChatCompletionRequest, chat_template: str | None) -> ToolPlan | None:
    """The plan for a request that has tools or tool turns in its history; None otherwise."""
    has_history = any(m.role == "tool" or m.tool_calls for m in request.messages)
    if not request.tools and not has_history:
        return None
    fmt = call_format_for(chat_template)
    messages = [_message(m, fmt) for m in request.messages]
    if not request.tools_active():
        return ToolPlan(messages, fmt, grammar=None, active=False)
    allowed = _allowed(request)
    forced = request.tool_choice == "required" or isinstance(request.tool_choice, NamedToolChoice)
    system = Message("system", _tool_prompt(request, fmt, allowed, forced))
    if messages and messages[0].role == "system":
        system = Message("system", f"{messages[0].content}\n\n{system.content}")
        messages = messages[1:]
    if forced:
        return ToolPlan(
            [system, *messages], fmt, grammar=_call_grammar(request, fmt, allowed), active=True
        )
    trigger = fmt.opener.strip()
    return ToolPlan(
        [system, *messages],
        fmt,
        grammar=_call_grammar(request, fmt, allowed) if trigger else None,
        active=True,
        grammar_trigger=trigger or None,
    )


def _allowed(request: ChatCompletionRequest) -> list:
    tools = request.tools or []
    if isinstance(request.tool_choice, NamedToolChoice):
        return [t for t in tools if t.function.name == request.tool_choice.function.name]
    return tools


def _tool_prompt(request: ChatCompletionRequest, fmt: CallFormat, allowed: list, forced: bool) -> str:
    listed = "\n".join(
        json.dumps(
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "parameters": t.function.parameters or {"type": "object"},
            },
            ensure_ascii=False,
        )
        for t in allowed
    )
    example = fmt.render([ParsedCall(allowed[0].function.name, {"argument": "value"})])
    when = WHEN["required" if forced else "auto"]
    if request.parallel_tool_calls is not False and not fmt.as_list:
        when += " To call several tools at once, write one such block per call."
    return TOOL_PROMPT.format(tools=listed, example=example, when=when)


def _call_grammar(request: ChatCompletionRequest, fmt: CallFormat, allowed: list) -> str:
    alternatives = [
        {
            "type": "object",
            "properties": {
                "name": {"const": t.function.name},
                fmt.arguments_key: t.function.parameters or {"type": "object"},
            },
            "required": ["name", fmt.arguments_key],
            "additionalProperties": False,
        }
        for t in allowed
    ]
    schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    rules = schema_grammar(schema, param="tools").splitlines()
    renamed = [
        f"{CALL_RULE} ::= {line.removeprefix('root ::= ')}" if line.startswith("root ::= ") else line
        for line in rules
    ]
    parallel = request.parallel_tool_calls is not False
    return "\n".join([fmt.grammar_root(CALL_RULE, parallel), *renamed])


def _message(message: ChatMessage, fmt: CallFormat) -> Message:
    if message.role == "tool":
        return Message("user", f"<tool_response>\n{message.text()}\n</tool_response>")
    role = "system" if message.role == "developer" else message.role
    if message.role == "assistant" and message.tool_calls:
        calls = [ParsedCall(c.function.name, _arguments(c.function.arguments)) for c in message.tool_calls]
        text = "\n".join(part for part in (message.text(), fmt.render(calls)) if part)
        return Message("assistant", text)
    return Message(role, message.text())


def _arguments(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"value": value}
