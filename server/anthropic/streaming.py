"""A streamed message in Anthropic's event sequence, for the one stream wrapper.

`message_start`, a `ping`, then each content block as `content_block_start`, its deltas and
`content_block_stop` (reasoning as a `thinking` block of `thinking_delta`s, text as a `text`
block of `text_delta`s, each tool call as a `tool_use` block whose input comes as one
`input_json_delta`), then `message_delta` with the stop_reason and the usage, and
`message_stop`. Blocks are numbered in the order they open and never interleave.

Text and reasoning stream as the model writes them; tool calls are parsed from the whole
reply before their blocks go out, so a client never sees raw call text (and the input of a
grammar-forced call is always one valid JSON object).

An error after the stream began goes out as an `error` event in Anthropic's shape. A stream
the drain ends finishes as one cut by max_tokens (stop_reason `max_tokens`), then says why in
an `error` event instead of `message_stop`: the SDKs raise on it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from hearth.engine.base import Finished, TextDelta
from hearth.runtime.errors import DrainTimeout
from hearth.runtime.pipeline import PreparedGeneration
from hearth.runtime.reasoning import Piece
from hearth.runtime.tools.reply import ReplyReader
from hearth.server.anthropic.protocol import Message, MessagesRequest, Usage
from hearth.server.anthropic.serving import stop_of, tool_input, tool_use_id, usage_of
from hearth.server.errors import to_anthropic
from hearth.server.streaming import SEP, SSE_END, Chunk

PING = {"event": "ping", "data": '{"type": "ping"}'}


def event(kind: str, **fields: object) -> bytes:
    """One whole server-sent event: Anthropic names each event after its data's type."""
    data = json.dumps({"type": kind, **fields}, ensure_ascii=False)
    return f"event: {kind}{SEP}data: {data}".encode() + SSE_END


class Blocks:
    """The stream's content blocks: opens one per run of a kind, closes it when another
    kind (or the end) comes, and numbers them."""

    def __init__(self) -> None:
        self.count = 0
        self.open: str | None = None  # the kind of the block now open

    def piece(self, piece: Piece) -> list[bytes]:
        if not piece.text:
            return []
        kind = "thinking" if piece.kind == "reasoning" else "text"
        events = []
        if self.open != kind:
            events += self.close()
            # An empty signature: see OutputThinking in protocol.py.
            start = {"type": "thinking", "thinking": "", "signature": ""}
            events.append(
                self._start(start if kind == "thinking" else {"type": "text", "text": ""})
            )
            self.open = kind
        delta = (
            {"type": "thinking_delta", "thinking": piece.text}
            if kind == "thinking"
            else {"type": "text_delta", "text": piece.text}
        )
        events.append(event("content_block_delta", index=self.count - 1, delta=delta))
        return events

    def tool_use(self, block_id: str, name: str, arguments: dict) -> list[bytes]:
        events = self.close()
        events.append(self._start({"type": "tool_use", "id": block_id, "name": name, "input": {}}))
        self.open = "tool_use"
        delta = {"type": "input_json_delta", "partial_json": json.dumps(arguments)}
        events.append(event("content_block_delta", index=self.count - 1, delta=delta))
        return events + self.close()

    def close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [event("content_block_stop", index=self.count - 1)]

    def _start(self, block: dict) -> bytes:
        self.count += 1
        return event("content_block_start", index=self.count - 1, content_block=block)


class MessageStream:
    """A streamed message as the stream wrapper takes it (see server/streaming.py)."""

    done = None  # Anthropic's streams end with message_stop, no "[DONE]"

    def __init__(self, body: MessagesRequest, prepared: PreparedGeneration) -> None:
        self.body = body
        self.prepared = prepared
        self.cut = False

    def finish_now(self) -> None:
        self.cut = True
        self.prepared.finish_now()

    def error_event(self, error: Exception) -> bytes:
        return event("error", error=to_anthropic(error).body.error.model_dump())

    def after_cut(self, error: DrainTimeout) -> list[Chunk]:
        return []  # events() has said it: see the module docstring

    async def events(self) -> AsyncIterator[bytes]:
        prepared = self.prepared
        started = Message(
            content=[],
            model=prepared.model_id,
            stop_reason=None,
            usage=Usage(input_tokens=prepared.generation.prompt_tokens, output_tokens=0),
        )
        yield event("message_start", message=started.model_dump())
        # While the prompt is read, before the first token: clients see the stream is alive.
        yield event("ping")
        reader, blocks = prepared.reader(), Blocks()
        async for item in prepared.events():
            if isinstance(item, TextDelta):
                for piece in reader.feed(item.text):
                    for chunk in blocks.piece(piece):
                        yield chunk
                continue
            async for chunk in self._end(item, reader, blocks):
                yield chunk
            return
        raise RuntimeError("the generation ended without finishing")

    async def _end(
        self, finished: Finished, reader: ReplyReader, blocks: Blocks
    ) -> AsyncIterator[bytes]:
        pieces, reply = reader.finish(finished.reason)
        for piece in pieces:
            for chunk in blocks.piece(piece):
                yield chunk
        for chunk in blocks.close():
            yield chunk
        for call in reply.calls:
            for chunk in blocks.tool_use(tool_use_id(call), call.name, tool_input(call)):
                yield chunk
        reason, sequence = stop_of(reply, finished, self.body.stops())
        usage = usage_of(finished).model_dump()
        yield event(
            "message_delta", delta={"stop_reason": reason, "stop_sequence": sequence}, usage=usage
        )
        if self.cut:
            yield self.error_event(
                DrainTimeout("The server is shutting down and ended this message.")
            )
            return
        yield event("message_stop")
