"""The model's reply as OpenAI tool calls, whole or streamed.

While streaming, text goes out as content until the call format's opener appears; from
there the text is held and parsed when the generation ends, and the calls go out as OpenAI
streams them: per call a delta with its id and name, then one with its arguments. A client
never sees the raw call text. The tail of the text that could be the start of the opener is
held back meanwhile (as a stop string is), so a call's first characters never leak out.
"""

from __future__ import annotations

import json

from hearth.runtime.tools.formats import CallFormat, ParsedCall
from hearth.runtime.tools.plan import ToolPlan
from hearth.server.protocol import (
    AssistantMessage,
    ChatDelta,
    FinishReason,
    FunctionCall,
    FunctionCallDelta,
    ToolCall,
    ToolCallDelta,
)


def tool_calls(calls: list[ParsedCall]) -> list[ToolCall]:
    return [
        ToolCall(function=FunctionCall(name=c.name, arguments=json.dumps(c.arguments, ensure_ascii=False)))
        for c in calls
    ]


def read_calls(fmt: CallFormat, text: str, reason: FinishReason) -> list[ToolCall]:
    """The calls in a reply. One that max_tokens cut off after its name is kept with the
    arguments written so far, as OpenAI's API returns it (under finish_reason `length`)."""
    calls = tool_calls(fmt.parse(text)[1])
    cut = fmt.cut_call(text) if reason == "length" else None
    if cut is not None:
        calls.append(ToolCall(function=FunctionCall(name=cut[0], arguments=cut[1])))
    return calls


def calls_reason(calls: list[ToolCall], reason: FinishReason, legacy: bool) -> FinishReason:
    """A reply's finish_reason: `tool_calls` (`function_call` for the deprecated functions)
    when it made calls, unless max_tokens cut it (`length` says the last call may be
    incomplete; `tool_calls` would claim it whole)."""
    if not calls or reason == "length":
        return reason
    return "function_call" if legacy else "tool_calls"


def assistant_reply(
    plan: ToolPlan | None, text: str, reason: FinishReason
) -> tuple[AssistantMessage, FinishReason]:
    """The whole reply as a message: tool calls (finish_reason tool_calls, or length when
    max_tokens cut them) or text."""
    if plan is None or not plan.active:
        return AssistantMessage(content=text), reason
    calls = read_calls(plan.call_format, text, reason)
    # The raw text of a call is never content, not even of one cut off before its name.
    content = plan.call_format.before_calls(text)
    if not calls:
        return AssistantMessage(content=content), reason
    finish = calls_reason(calls, reason, plan.legacy)
    if plan.legacy:  # one call: the legacy grammar allows no more
        return AssistantMessage(content=content or None, function_call=calls[0].function), finish
    return AssistantMessage(content=content or None, tool_calls=calls), finish


def call_deltas(calls: list[ToolCall], legacy: bool) -> list[ChatDelta]:
    """Each call as two streamed deltas: its id and name, then its arguments (for the
    deprecated functions, the one call as `function_call` deltas, which have no id)."""
    deltas = []
    for index, call in enumerate(calls[:1] if legacy else calls):
        head = FunctionCallDelta(name=call.function.name, arguments="")
        body = FunctionCallDelta(arguments=call.function.arguments)
        if legacy:
            deltas += [ChatDelta(function_call=head), ChatDelta(function_call=body)]
            continue
        deltas.append(ChatDelta(tool_calls=[
            ToolCallDelta(index=index, id=call.id, type="function", function=head)]))
        deltas.append(ChatDelta(tool_calls=[ToolCallDelta(index=index, function=body)]))
    return deltas


class CallWatcher:
    """Splits a streamed reply into content to send now and call text to hold."""

    def __init__(self, fmt: CallFormat) -> None:
        self._format = fmt
        self._held = ""
        self._calling = False

    def feed(self, text: str) -> str:
        self._held += text
        if self._calling:
            return ""
        opener = self._format.opener
        if not opener:
            # A bare-JSON family: a reply that opens with "{" is a call.
            visible = self._held.lstrip()
            if not visible:
                return ""
            self._calling = visible.startswith("{")
            return "" if self._calling else self._release(len(self._held))
        found = self._held.find(opener)
        if found >= 0:
            self._calling = True
            return self._release(found)
        return self._release(len(self._held) - _prefix_overlap(self._held, opener))

    def finish(self, reason: FinishReason = "stop") -> tuple[str, list[ToolCall]]:
        """What is left to send as content, and the calls found in the held text."""
        calls = read_calls(self._format, self._held, reason)
        if not calls:
            # Held because a call began: a call cut off before its name is not shown.
            return ("" if self._calling else self._held), []
        return self._format.before_calls(self._held), calls

    def _release(self, upto: int) -> str:
        out, self._held = self._held[:upto], self._held[upto:]
        return out


def _prefix_overlap(text: str, opener: str) -> int:
    """The length of the longest end of text that is a start of opener."""
    for size in range(min(len(text), len(opener) - 1), 0, -1):
        if opener.startswith(text[-size:]):
            return size
    return 0
