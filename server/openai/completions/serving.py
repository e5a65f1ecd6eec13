"""Streaming a text completion: its chunks, in the order OpenAI sends them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from hearth.engine.base import Finished, TextDelta
from hearth.runtime.pipeline import Collected, PreparedGeneration
from hearth.server.openai.completions.protocol import (
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionRequest,
)
from hearth.server.openai.logprobs import completion_logprobs
from hearth.server.openai.protocol import Usage
from hearth.server.openai.streaming import TextChunks, usage_of
from hearth.server.streaming import Chunk


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
        choices = (
            []
            if usage
            else [
                CompletionChoice(index=choice, text=text, finish_reason=finish, logprobs=logprobs)
            ]
        )
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


def whole_completion(
    prepared: PreparedGeneration, collected: list[Collected], body: CompletionRequest
) -> Completion:
    """Every choice, whole, as one text completion."""
    echo = body.prompt_text() if body.echo else ""
    choices = [
        CompletionChoice(
            index=index,
            text=echo + whole.text,
            finish_reason=whole.finished.reason,
            logprobs=None
            if body.logprobs is None
            else completion_logprobs(whole.logprobs, body.logprobs),
        )
        for index, whole in enumerate(collected)
    ]
    return Completion(
        model=prepared.model_id,
        choices=choices,
        usage=usage_of(*(whole.finished for whole in collected)),
    )
