"""A reply read for tool calls, whole or as it streams: its content, its calls, its end.

While streaming, text goes out as content until the call format's opener appears; from
there the text is held and parsed when the generation ends, so a client never sees the raw
call text. The tail of the text that could be the start of the opener is held back
meanwhile (as a stop string is), so a call's first characters never leak out. Each API
writes the calls in its own shape; what they are and why the reply ended is decided here,
once, for all of them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Literal

from hearth.engine.text import held_overlap
from hearth.runtime.reasoning import (
    Piece,
    ReasoningStyle,
    ThinkingSplitter,
    split_reasoning,
)
from hearth.runtime.requests import ToolCall
from hearth.runtime.tools.formats import CallFormat
from hearth.runtime.tools.plan import ToolPlan

# Why a reply ended: its own end or a stop string, max_tokens, or calls to make.
ReplyEnd = Literal["stop", "length", "tool_calls"]


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class Reply:
    content: str  # the text outside the calls and the reasoning
    calls: tuple[ToolCall, ...]
    end: ReplyEnd
    reasoning: str = ""  # a thinking model's reasoning, without its tags


def read_calls(fmt: CallFormat, text: str, reason: str) -> tuple[ToolCall, ...]:
    """The calls in a reply. One that max_tokens cut off after its name is kept with the
    arguments written so far, as OpenAI's API returns it (under finish_reason `length`)."""
    calls = [
        ToolCall(new_call_id(), call.name, json.dumps(call.arguments, ensure_ascii=False))
        for call in fmt.parse(text)[1]
    ]
    cut = fmt.cut_call(text) if reason == "length" else None
    if cut is not None:
        calls.append(ToolCall(new_call_id(), cut[0], cut[1]))
    return tuple(calls)


def reply_end(calls: tuple[ToolCall, ...], reason: str) -> ReplyEnd:
    """`tool_calls` when the reply made calls, unless max_tokens cut it: `length` says the
    last call may be incomplete, where `tool_calls` would claim it whole."""
    if calls and reason != "length":
        return "tool_calls"
    return "length" if reason == "length" else "stop"


def read_reply(
    plan: ToolPlan | None, text: str, reason: str, reasoning: ReasoningStyle | None = None
) -> Reply:
    """A whole reply: its reasoning, then tool calls (and the text before them) or text."""
    thought, text = split_reasoning(reasoning, text)
    if plan is None or not plan.active:
        return Reply(text, (), reply_end((), reason), thought)
    calls = read_calls(plan.call_format, text, reason)
    # The raw text of a call is never content, not even of one cut off before its name.
    return Reply(plan.call_format.before_calls(text), calls, reply_end(calls, reason), thought)


class ReplyReader:
    """A streamed reply read once for every API: reasoning, then content, then calls.

    `feed` returns the pieces that may go out now; `finish` the pieces still held and the
    whole reply. Reasoning is split off first, so a call written after the thinking is a
    call, and text inside the thinking that looks like one is not.
    """

    def __init__(self, plan: ToolPlan | None, reasoning: ReasoningStyle | None = None) -> None:
        self._splitter = ThinkingSplitter(reasoning) if reasoning is not None else None
        active = plan is not None and plan.active
        self._watcher = CallWatcher(plan.call_format) if active else None
        self._reasoning: list[str] = []
        self._content: list[str] = []

    def feed(self, text: str) -> list[Piece]:
        pieces = self._splitter.feed(text) if self._splitter else [Piece("content", text)]
        return self._through_watcher(pieces)

    def finish(self, reason: str) -> tuple[list[Piece], Reply]:
        pieces = self._through_watcher(self._splitter.finish() if self._splitter else [])
        thought = "".join(self._reasoning)
        if self._watcher is None:
            return pieces, Reply("".join(self._content), (), reply_end((), reason), thought)
        reply = self._watcher.finish(reason)
        if reply.content:
            pieces.append(Piece("content", reply.content))
        before = "".join(self._content)
        whole = Reply(before + reply.content, reply.calls, reply.end, thought)
        return pieces, whole

    def _through_watcher(self, pieces: list[Piece]) -> list[Piece]:
        out = []
        for piece in pieces:
            if piece.kind == "reasoning":
                self._reasoning.append(piece.text)
                out.append(piece)
                continue
            text = self._watcher.feed(piece.text) if self._watcher else piece.text
            if text:
                self._content.append(text)
                out.append(Piece("content", text))
        return out


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
        return self._release(len(self._held) - held_overlap(self._held, opener))

    def finish(self, reason: str = "stop") -> Reply:
        """What is left to send as content, the calls found in the held text, and the end."""
        calls = read_calls(self._format, self._held, reason)
        if not calls:
            # Held because a call began: a call cut off before its name is not shown.
            return Reply("" if self._calling else self._held, (), reply_end((), reason))
        return Reply(self._format.before_calls(self._held), calls, reply_end(calls, reason))

    def _release(self, upto: int) -> str:
        out, self._held = self._held[:upto], self._held[upto:]
        return out
