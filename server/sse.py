"""Streaming responses: OpenAI chunks over server-sent events.

A stream opens with a chunk carrying the assistant role, sends content deltas, and closes
with exactly one chunk carrying finish_reason, then the usage chunk when the client asked
for it, then `[DONE]`. An error after the stream began cannot change the status code any
more, so it goes out as an event in OpenAI's error shape and the stream ends there.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

from hearth.server.drain import current_drain
from hearth.server.engine.base import Finished, TextDelta
from hearth.server.errors import DrainTimeout, to_openai
from hearth.server.generation import PreparedGeneration
from hearth.server.protocol import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatDelta,
    Completion,
    CompletionChoice,
    PromptTokensDetails,
    Usage,
)
from hearth.server.tools.reply import CallWatcher, call_deltas
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

log = logging.getLogger(__name__)

DONE = "[DONE]"
SEP = "\n"
SSE_END = (SEP * 2).encode()

# What a stream yields: JSON payloads for sse-starlette to frame, or whole events as bytes.
Chunk = str | bytes


def usage_of(finished: Finished) -> Usage:
    return Usage(
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.completion_tokens,
        total_tokens=finished.prompt_tokens + finished.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=finished.cached_tokens),
    )


def event_stream(
    chunks: AsyncIterator[Chunk], headers: dict[str, str] | None = None
) -> EventSourceResponse:
    return EventSourceResponse(_guarded(chunks), headers=headers, sep=SEP, ping=15)


async def _guarded(chunks: AsyncIterator[Chunk]) -> AsyncIterator[Chunk]:
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as error:  # noqa: BLE001 - every failure must reach the client
        # (A disconnect cancels this task: CancelledError is no Exception and passes by.)
        log.warning("stream ended by an error: %s", error)
        yield to_openai(error).body.model_dump_json()
        return
    yield DONE


class TextChunks:
    """A stream's content chunks: dumped by pydantic once, then filled in per token.

    Within one stream, content chunks differ only in their text. So the chunk model is
    dumped once with a marker for the text, and each token's chunk is the JSON outside the
    marker around the token's JSON-escaped text. Building and dumping three pydantic models
    per token was a fifth of the event loop's work per streamed token; this is one
    `json.dumps` of a short string. The wire shape is still the model's.
    """

    _MARK = "hearth-text-9c1f0e"

    def __init__(self, build: Callable[[str], BaseModel]) -> None:
        self._build = build
        before, found, after = build(self._MARK).model_dump_json().partition(f'"{self._MARK}"')
        # A model id that itself contains the marker: dump every chunk the slow way.
        self._halves = (before, after) if found and self._MARK not in before + after else None

    def __call__(self, text: str) -> str:
        if self._halves is None:
            return self._build(text).model_dump_json()
        before, after = self._halves
        return before + json.dumps(text, ensure_ascii=False) + after

    def event(self, text: str) -> bytes:
        """The chunk as a whole server-sent event, as sse-starlette would frame it.

        sse-starlette passes bytes through untouched; framing the one-line JSON here skips
        its per-event parsing of the data for line breaks (a tenth of the per-token work).
        """
        return b"data: " + self(text).encode() + SSE_END


def _cut_by_drain() -> DrainTimeout:
    # finish_reason "length": the reply was cut by a limit (the drain's), as OpenAI's
    # clients already understand; the error event after it says which limit.
    return DrainTimeout("The server is shutting down and ended this stream.")


async def chat_chunks(
    prepared: PreparedGeneration, include_usage: bool
) -> AsyncIterator[Chunk]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(
        delta: ChatDelta, finish: str | None = None, usage: Usage | None = None
    ) -> ChatCompletionChunk:
        choices = [] if usage else [ChatChunkChoice(delta=delta, finish_reason=finish)]
        return ChatCompletionChunk(
            id=chunk_id, created=created, model=prepared.model_id, choices=choices, usage=usage
        )

    content = TextChunks(lambda text: chunk(ChatDelta(content=text)))
    watcher = CallWatcher(prepared.tools.call_format) if prepared.tools and prepared.tools.active else None
    drain = current_drain.get()
    yield chunk(ChatDelta(role="assistant", content="")).model_dump_json()
    async for event in prepared.events():
        if drain is not None and drain.expired:
            yield chunk(ChatDelta(), finish="length").model_dump_json()
            raise _cut_by_drain()
        if isinstance(event, TextDelta):
            text = watcher.feed(event.text) if watcher else event.text
            if text:
                yield content.event(text)
        elif isinstance(event, Finished):
            reason = event.reason
            if watcher is not None:
                rest, calls = watcher.finish()
                if rest:
                    yield content.event(rest)
                for delta in call_deltas(calls):
                    yield chunk(ChatDelta(tool_calls=delta)).model_dump_json()
                reason = "tool_calls" if calls else reason
            yield chunk(ChatDelta(), finish=reason).model_dump_json()
            if include_usage:
                yield chunk(ChatDelta(), usage=usage_of(event)).model_dump_json()


async def completion_chunks(
    prepared: PreparedGeneration, include_usage: bool, echo: str = ""
) -> AsyncIterator[Chunk]:
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(text: str, finish: str | None = None, usage: Usage | None = None) -> Completion:
        choices = [] if usage else [CompletionChoice(text=text, finish_reason=finish)]
        return Completion(
            id=completion_id, created=created, model=prepared.model_id, choices=choices, usage=usage
        )

    content = TextChunks(chunk)
    drain = current_drain.get()
    if echo:
        yield content.event(echo)
    async for event in prepared.events():
        if drain is not None and drain.expired:
            yield chunk("", finish="length").model_dump_json()
            raise _cut_by_drain()
        if isinstance(event, TextDelta):
            yield content.event(event.text)
        elif isinstance(event, Finished):
            yield chunk("", finish=event.reason).model_dump_json()
            if include_usage:
                yield chunk("", usage=usage_of(event)).model_dump_json()
