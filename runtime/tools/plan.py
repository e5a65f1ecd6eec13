"""A chat request with tools, as a prompt, a grammar and a parser for the reply.

Models whose template knows tools (it reads a `tools` variable) were trained on their
family's call format, and their template writes the tool definitions, the calls in the
history and the tool results the way the model saw them in training: such a chat format gets
the tools and the tool turns as they are. Every other format (the bundled SmolLM2's
template, transcripts) gets them written out: the tools described in a system message (the
tool-use prompt below, in the family's call format), calls in the history in that format,
and tool results as user turns wrapped in `<tool_response>`. Under `required` or a named
function a grammar forces a well-formed call to one of the allowed tools with arguments
matching its parameters, so even a 135M model always calls validly. Under `auto` the model
chooses: its text is free until it writes the family's call opener, and from there the same
grammar holds (a lazy grammar), so a call it starts is a valid call too. (Bare-JSON families
have no opener to wait for: their calls under `auto` are parsed as written.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hearth.prompts.base import Message, ToolCallTurn
from hearth.runtime.requests import ChatRequest, Tool, ToolUse, Turn
from hearth.runtime.structured import schema_grammar
from hearth.runtime.tools.formats import CallFormat, ParsedCall, call_format_for

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
    # The tools for a chat template that renders them itself (None: they are in `messages`).
    template_tools: list[dict] | None = None


def plan_tools(
    request: ChatRequest, chat_template: str | None, native: bool = False
) -> ToolPlan | None:
    """The plan for a request that has tools or tool turns in its history; None otherwise.

    `native`: the chat format renders tools and tool turns itself."""
    use = request.tools
    if (use is None or not use.tools) and not request.has_tool_history():
        return None
    fmt = call_format_for(chat_template)
    if native:
        messages = [_native_message(turn) for turn in request.turns]
    else:
        messages = [_message(turn, fmt) for turn in request.turns]
    if use is None or not use.active:
        return ToolPlan(
            messages, fmt, grammar=None, active=False, template_tools=[] if native else None
        )
    allowed = use.allowed()
    # Forced: the grammar holds from the first token. Under `auto` it waits for the opener
    # (a lazy grammar); a family without one is parsed as written.
    grammar = _call_grammar(use, fmt, allowed) if use.forced or fmt.opener else None
    trigger = None if use.forced else fmt.opener.strip() or None
    if native:
        # As the client sent them: a template may print every key it is given.
        described = [tool.as_sent for tool in allowed]
        return ToolPlan(
            messages, fmt, grammar, active=True, grammar_trigger=trigger, template_tools=described
        )
    system = Message("system", _tool_prompt(use, fmt, allowed))
    if messages and messages[0].role == "system":
        system = Message("system", f"{messages[0].content}\n\n{system.content}")
        messages = messages[1:]
    return ToolPlan([system, *messages], fmt, grammar, active=True, grammar_trigger=trigger)


def _tool_prompt(use: ToolUse, fmt: CallFormat, allowed: tuple[Tool, ...]) -> str:
    listed = "\n".join(
        json.dumps(
            {
                "name": tool.name,
                "description": tool.description or "",
                "parameters": tool.parameters or {"type": "object"},
            },
            ensure_ascii=False,
        )
        for tool in allowed
    )
    example = fmt.render([ParsedCall(allowed[0].name, {"argument": "value"})])
    when = WHEN["required" if use.forced else "auto"]
    if use.parallel and not fmt.as_list:
        when += " To call several tools at once, write one such block per call."
    return TOOL_PROMPT.format(tools=listed, example=example, when=when)


def _call_grammar(use: ToolUse, fmt: CallFormat, allowed: tuple[Tool, ...]) -> str:
    alternatives = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool.name},
                fmt.arguments_key: tool.parameters or {"type": "object"},
            },
            "required": ["name", fmt.arguments_key],
            "additionalProperties": False,
        }
        for tool in allowed
    ]
    schema = alternatives[0] if len(alternatives) == 1 else {"anyOf": alternatives}
    rules = schema_grammar(schema, param="tools").splitlines()
    renamed = [
        f"{CALL_RULE} ::= {line.removeprefix('root ::= ')}"
        if line.startswith("root ::= ")
        else line
        for line in rules
    ]
    return "\n".join([fmt.grammar_root(CALL_RULE, use.parallel), *renamed])


def _message(turn: Turn, fmt: CallFormat) -> Message:
    if turn.role == "tool":
        return Message("user", f"<tool_response>\n{turn.content}\n</tool_response>")
    if turn.role == "assistant" and turn.tool_calls:
        calls = [ParsedCall(call.name, _arguments(call.arguments)) for call in turn.tool_calls]
        text = "\n".join(part for part in (turn.content, fmt.render(calls)) if part)
        return Message("assistant", text, reasoning=turn.reasoning)
    return Message(turn.role, turn.content, reasoning=turn.reasoning)


def _native_message(turn: Turn) -> Message:
    if turn.role == "tool":
        return Message("tool", turn.content, tool_call_id=turn.tool_call_id)
    calls = tuple(
        ToolCallTurn(call.id, call.name, _arguments(call.arguments)) for call in turn.tool_calls
    )
    return Message(turn.role, turn.content, tool_calls=calls, reasoning=turn.reasoning)


def _arguments(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"value": value}
