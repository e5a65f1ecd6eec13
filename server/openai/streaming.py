"""What OpenAI's chat and text completion streams share, for the one stream wrapper.

Both end with `[DONE]`. An error after the stream began goes out as an event in OpenAI's
error shape, and a stream the drain ended closes its choices with finish_reason "length" (a
limit cut the reply, as OpenAI's clients understand it) followed by that error event (see
server/streaming.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel

from hearth.engine.base import Finished
from hearth.runtime.errors import DrainTimeout
from hearth.runtime.pipeline import PreparedGeneration
from hearth.server.errors import to_openai
from hearth.server.openai.protocol import PromptTokensDetails, Usage
from hearth.server.streaming import SSE_END, Chunk

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
