"""A chat request with tools, as a prompt, a grammar and a parser for the reply.

Models whose template knows tools (it reads a `tools` variable) were trained on their
family's call format, and their template writes the tool definitions, the calls in the
history and the tool results the way the model saw them in training: such a chat format gets
the tools and the tool turns as they are. Every other format (the bundled SmolLM2's
template, transcripts) gets them written out: the tools described in a system message (the
tool-use prompt below, in the family's call format), calls in the history in that format,
and tool results as user turns wrapped in `<tool_response>`. Under `required` or a named function a grammar forces a well-formed call to
one of the allowed tools with arguments matching its parameters, so even a 135M model
always calls validly. Under `auto` the model chooses: its text is free until it writes the
family's call opener, and from there the same grammar holds (a lazy grammar), so a call it
starts is a valid call too. (Bare-JSON families have no opener to wait for: their calls
under `auto` are parsed as written.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hearth.prompts.base import Message, ToolCallTurn
from hearth.runtime.tools.formats import CallFormat, ParsedCall, call_format_for
from hearth.server.protocol import ChatCompletionRequest, ChatMessage, NamedToolChoice
from hearth.server.structured.grammar import schema_grammar

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
    legacy: bool = False  # the request sent deprecated `functions`: reply with `function_call`


def plan_tools(
    request: ChatCompletionRequest, chat_template: str | None, native: bool = False
) -> ToolPlan | None:
    """The plan for a request that has tools or tool turns in its history; None otherwise.

    `native`: the chat format renders tools and tool turns itself."""
    has_history = any(m.role == "tool" or m.tool_calls for m in request.messages)
    if not request.tools and not has_history:
        return None
    fmt = call_format_for(chat_template)
    if native:
        messages = [_native_message(m) for m in request.messages]
    else:
        messages = [_message(m, fmt) for m in request.messages]
    if not request.tools_active():
        return ToolPlan(messages, fmt, grammar=None, active=False,
                        template_tools=[] if native else None)
    allowed = _allowed(request)
    forced = request.tool_choice == "required" or isinstance(request.tool_choice, NamedToolChoice)
    # Forced: the grammar holds from the first token. Under `auto` it waits for the opener
    # (a lazy grammar); a family without one is parsed as written.
    grammar = _call_grammar(request, fmt, allowed) if forced or fmt.opener else None
    trigger = None if forced else fmt.opener.strip() or None
    if native:
        # As the client sent them: a template may print every key it is given.
        described = [tool.model_dump(exclude_unset=True) for tool in allowed]
        return ToolPlan(messages, fmt, grammar, active=True, grammar_trigger=trigger,
                        template_tools=described, legacy=request.legacy_functions())
    system = Message("system", _tool_prompt(request, fmt, allowed, forced))
    if messages and messages[0].role == "system":
        system = Message("system", f"{messages[0].content}\n\n{system.content}")
        messages = messages[1:]
    return ToolPlan([system, *messages], fmt, grammar, active=True, grammar_trigger=trigger,
                    legacy=request.legacy_functions())


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
    if request.parallel_calls() and not fmt.as_list:
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
    return "\n".join([fmt.grammar_root(CALL_RULE, request.parallel_calls()), *renamed])


def _message(message: ChatMessage, fmt: CallFormat) -> Message:
    if message.role == "tool":
        return Message("user", f"<tool_response>\n{message.text()}\n</tool_response>")
    role = "system" if message.role == "developer" else message.role
    if message.role == "assistant" and message.tool_calls:
        calls = [ParsedCall(c.function.name, _arguments(c.function.arguments)) for c in message.tool_calls]
        text = "\n".join(part for part in (message.text(), fmt.render(calls)) if part)
        return Message("assistant", text)
    return Message(role, message.text())


def _native_message(message: ChatMessage) -> Message:
    if message.role == "tool":
        return Message("tool", message.text(), tool_call_id=message.tool_call_id)
    role = "system" if message.role == "developer" else message.role
    calls = tuple(
        ToolCallTurn(c.id, c.function.name, _arguments(c.function.arguments))
        for c in message.tool_calls or ()
    )
    return Message(role, message.text(), tool_calls=calls)


def _arguments(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"value": value}
