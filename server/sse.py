"""Streaming responses: OpenAI chunks over server-sent events.

A stream opens with a chunk carrying the assistant role, sends content deltas, and closes
with exactly one chunk carrying finish_reason, then the usage chunk when the client asked
for it, then `[DONE]`. An error after the stream began cannot change the status code any
more, so it goes out as an event in OpenAI's error shape and the stream ends there.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator

from hearth.server.engine.base import Finished, TextDelta
from hearth.server.errors import to_openai
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
from sse_starlette import EventSourceResponse

log = logging.getLogger(__name__)

DONE = "[DONE]"


def usage_of(finished: Finished) -> Usage:
    return Usage(
        prompt_tokens=finished.prompt_tokens,
        completion_tokens=finished.completion_tokens,
        total_tokens=finished.prompt_tokens + finished.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=finished.cached_tokens),
    )


def event_stream(
    chunks: AsyncIterator[str], headers: dict[str, str] | None = None
) -> EventSourceResponse:
    return EventSourceResponse(_guarded(chunks), headers=headers, sep="\n", ping=15)


async def _guarded(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as error:  # noqa: BLE001 - every failure must reach the client
        # (A disconnect cancels this task: CancelledError is no Exception and passes by.)
        log.warning("stream ended by an error: %s", error)
        yield to_openai(error).body.model_dump_json()
        return
    yield DONE


async def chat_chunks(prepared: PreparedGeneration, include_usage: bool) -> AsyncIterator[str]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: ChatDelta, finish: str | None = None, usage: Usage | None = None) -> str:
        choices = [] if usage else [ChatChunkChoice(delta=delta, finish_reason=finish)]
        return ChatCompletionChunk(
            id=chunk_id, created=created, model=prepared.model_id, choices=choices, usage=usage
        ).model_dump_json()

    yield chunk(ChatDelta(role="assistant", content=""))
    async for event in prepared.events():
        if isinstance(event, TextDelta):
            yield chunk(ChatDelta(content=event.text))
        elif isinstance(event, Finished):
            yield chunk(ChatDelta(), finish=event.reason)
            if include_usage:
                yield chunk(ChatDelta(), usage=usage_of(event))


async def completion_chunks(
    prepared: PreparedGeneration, include_usage: bool, echo: str = ""
) -> AsyncIterator[str]:
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(text: str, finish: str | None = None, usage: Usage | None = None) -> str:
        choices = [] if usage else [CompletionChoice(text=text, finish_reason=finish)]
        return Completion(
            id=completion_id,
            created=created,
            model=prepared.model_id,
            choices=choices,
            usage=usage,
        ).model_dump_json()

    if echo:
        yield chunk(echo)
    async for event in prepared.events():
        if isinstance(event, TextDelta):
            yield chunk(event.text)
        elif isinstance(event, Finished):
            yield chunk("", finish=event.reason)
            if include_usage:
                yield chunk("", usage=usage_of(event))
