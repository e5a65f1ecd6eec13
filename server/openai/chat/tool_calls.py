"""A reply's tool calls in OpenAI's chat shape, whole or as streamed deltas.

What the calls are and why the reply ended is the runtime's reading (runtime/tools/reply.py);
this module only writes it: `tool_calls` with finish_reason `tool_calls`, or, for a request
that sent the deprecated `functions`, the one call as `function_call` with finish_reason
`function_call`.
"""

from __future__ import annotations

from hearth.runtime.tools.reply import Reply
from hearth.server.openai.chat.protocol import (
    AssistantMessage,
    ChatDelta,
    FunctionCallDelta,
    ToolCallDelta,
)
from hearth.server.openai.protocol import FinishReason, FunctionCall, ToolCall


def wire_calls(reply: Reply) -> list[ToolCall]:
    return [
        ToolCall(id=call.id, function=FunctionCall(name=call.name, arguments=call.arguments))
        for call in reply.calls
    ]


def finish_reason(reply: Reply, legacy: bool) -> FinishReason:
    if reply.end == "tool_calls" and legacy:
        return "function_call"
    return reply.end


def assistant_message(reply: Reply, legacy: bool) -> AssistantMessage:
    """The whole reply as a message: tool calls (and any text before them) or text."""
    calls = wire_calls(reply)
    thought = reply.reasoning or None
    reasoning = {"reasoning_content": thought, "reasoning": thought}
    if not calls:
        return AssistantMessage(content=reply.content, **reasoning)
    if legacy:  # one call: the legacy grammar allows no more
        return AssistantMessage(
            content=reply.content or None, function_call=calls[0].function, **reasoning
        )
    return AssistantMessage(content=reply.content or None, tool_calls=calls, **reasoning)


def call_deltas(reply: Reply, legacy: bool) -> list[ChatDelta]:
    """Each call as two streamed deltas: its id and name, then its arguments (for the
    deprecated functions, the one call as `function_call` deltas, which have no id)."""
    deltas = []
    calls = wire_calls(reply)
    for index, call in enumerate(calls[:1] if legacy else calls):
        head = FunctionCallDelta(name=call.function.name, arguments="")
        body = FunctionCallDelta(arguments=call.function.arguments)
        if legacy:
            deltas += [ChatDelta(function_call=head), ChatDelta(function_call=body)]
            continue
        deltas.append(
            ChatDelta(
                tool_calls=[ToolCallDelta(index=index, id=call.id, type="function", function=head)]
            )
        )
        deltas.append(ChatDelta(tool_calls=[ToolCallDelta(index=index, function=body)]))
    return deltas
