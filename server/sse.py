"""Streaming chat and text completions: OpenAI chunks, through the one stream wrapper.

A stream opens with a chunk carrying the assistant role, sends content deltas, and closes
with exactly one chunk carrying finish_reason, then the usage chunk when the client asked
for it, then `[DONE]`. With n > 1 every choice does so under its own `index`, their chunks
interleaved as the choices are decoded, and the usage chunk comes once, after all of them.
An error after the stream began goes out as an event in OpenAI's error shape, and a stream
the drain ended closes its choices with finish_reason "length" (a limit cut the reply, as
OpenAI's clients understand it) followed by that error event (see streaming.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from hearth.engine.base import Finished, TextDelta
from hearth.runtime.errors import DrainTimeout
from hearth.runtime.pipeline import PreparedGeneration
from hearth.server.errors import to_openai
from hearth.server.logprobs import chat_logprobs, completion_logprobs
from hearth.server.protocol import (
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatDelta,
    ChoiceLogprobs,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    PromptTokensDetails,
    Usage,
)
from hearth.server.streaming import SSE_END, Chunk
from hearth.server.tools.reply import CallWatcher, call_deltas, calls_reason
from pydantic import BaseModel

DONE = "[DONE]"


def usage_of(*finished: Finished) -> Usage:
    """A request's usage: its prompt (read once, whatever n) and all choices' tokens."""
    first = finished[0]
    completion = sum(f.completion_tokens for f in finished)
    return Usage(
        prompt_tokens=first.prompt_tokens,
        completion_tokens=completion,
        total_tokens=first.prompt_tokens + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=first.cached_tokens),
    )


@dataclass(eq=False)  # hashable by identity: the drain keeps running streams in a WeakSet
class OpenAIStream:
    """A chat or text completion stream as the stream wrapper takes it."""

    prepared: PreparedGeneration
    chunks: AsyncIterator[Chunk]
    done: Chunk | None = DONE

    def events(self) -> AsyncIterator[Chunk]:
        return self.chunks

    def error_event(self, error: Exception) -> Chunk:
        return to_openai(error).body.model_dump_json()

    def after_cut(self, error: DrainTimeout) -> Sequence[Chunk]:
        return [self.error_event(error)]

    def finish_now(self) -> None:
        self.prepared.finish_now()


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


async def chat_chunks(
    prepared: PreparedGeneration, include_usage: bool
) -> AsyncIterator[Chunk]:
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(
        choice: int,
        delta: ChatDelta,
        finish: str | None = None,
        usage: Usage | None = None,
        logprobs: ChoiceLogprobs | None = None,
    ) -> ChatCompletionChunk:
        choices = [] if usage else [
            ChatChunkChoice(index=choice, delta=delta, finish_reason=finish, logprobs=logprobs)
        ]
        return ChatCompletionChunk(
            id=chunk_id, created=created, model=prepared.model_id, choices=choices, usage=usage
        )

    n = len(prepared.generations)
    content = [TextChunks(lambda text, i=i: chunk(i, ChatDelta(content=text))) for i in range(n)]
    tools = prepared.tools if prepared.tools and prepared.tools.active else None
    watchers = [CallWatcher(tools.call_format) for _ in range(n)] if tools else None
    # Logprobs of tokens whose text a call watcher holds back, sent with what it releases.
    held: list[list] = [[] for _ in range(n)]
    finished: list[Finished] = []

    def text_chunk(choice: int, text: str, logprobs: list) -> Chunk:
        if not logprobs:
            return content[choice].event(text)
        delta = ChatDelta(content=text)
        return chunk(choice, delta, logprobs=chat_logprobs(logprobs)).model_dump_json()

    for choice in range(n):
        yield chunk(choice, ChatDelta(role="assistant", content="")).model_dump_json()
    async for choice, event in prepared.all_events():
        if isinstance(event, TextDelta):
            held[choice].extend(event.logprobs)
            text = watchers[choice].feed(event.text) if watchers else event.text
            if text:
                yield text_chunk(choice, text, held[choice])
                held[choice] = []
        elif isinstance(event, Finished):
            finished.append(event)
            reason = event.reason
            if watchers is not None:
                rest, calls = watchers[choice].finish(reason)
                if rest:
                    yield text_chunk(choice, rest, held[choice])
                for delta in call_deltas(calls, tools.legacy):
                    yield chunk(choice, delta).model_dump_json()
                reason = calls_reason(calls, reason, tools.legacy)
            yield chunk(choice, ChatDelta(), finish=reason).model_dump_json()
    if include_usage and finished:
        yield chunk(0, ChatDelta(), usage=usage_of(*finished)).model_dump_json()


async def completion_chunks(
    prepared: PreparedGeneration, include_usage: bool, echo: str = ""
) -> AsyncIterator[Chunk]:
    completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(
        choice: int,
        text: str,
        finish: str | None = None,
        usage: Usage | None = None,
        logprobs: CompletionLogprobs | None = None,
    ) -> Completion:
        choices = [] if usage else [
            CompletionChoice(index=choice, text=text, finish_reason=finish, logprobs=logprobs)
        ]
        return Completion(
            id=completion_id, created=created, model=prepared.model_id, choices=choices, usage=usage
        )

    n = len(prepared.generations)
    content = [TextChunks(lambda text, i=i: chunk(i, text)) for i in range(n)]
    offsets = [len(echo)] * n  # where each choice's next token starts in its text
    finished: list[Finished] = []
    if echo:
        for choice in range(n):
            yield content[choice].event(echo)
    async for choice, event in prepared.all_events():
        if isinstance(event, TextDelta):
            if prepared.logprobs is None:
                yield content[choice].event(event.text)
            else:
                logprobs = completion_logprobs(event.logprobs, prepared.logprobs, offsets[choice])
                yield chunk(choice, event.text, logprobs=logprobs).model_dump_json()
            offsets[choice] += len(event.text)
        elif isinstance(event, Finished):
            finished.append(event)
            yield chunk(choice, "", finish=event.reason).model_dump_json()
    if include_usage and finished:
        yield chunk(0, "", usage=usage_of(*finished)).model_dump_json()
