"""Streaming a chat completion: its chunks, in the order OpenAI sends them.

A stream opens with a chunk carrying the assistant role, sends content deltas, and closes
with exactly one chunk carrying finish_reason, then the usage chunk when the client asked
for it. With n > 1 every choice does so under its own `index`, their chunks interleaved as
the choices are decoded, and the usage chunk comes once, after all of them. Tool calls are
held back and sent whole once the reply ends (see runtime/tools/reply.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

from hearth.engine.base import Finished, TextDelta
from hearth.runtime.pipeline import Collected, PreparedGeneration
from hearth.runtime.reasoning import Piece
from hearth.server.openai.chat.protocol import (
    ChatChoice,
    ChatChunkChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatDelta,
)
from hearth.server.openai.chat.tool_calls import assistant_message, call_deltas, finish_reason
from hearth.server.openai.logprobs import chat_logprobs
from hearth.server.openai.protocol import ChoiceLogprobs, Usage
from hearth.server.openai.streaming import TextChunks, usage_of
from hearth.server.streaming import Chunk


async def chat_chunks(
    prepared: PreparedGeneration, include_usage: bool, legacy: bool = False
) -> AsyncIterator[Chunk]:
    """`legacy`: the request sent the deprecated `functions`; calls go out as `function_call`."""
    chunk_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(
        choice: int,
        delta: ChatDelta,
        finish: str | None = None,
        usage: Usage | None = None,
        logprobs: ChoiceLogprobs | None = None,
    ) -> ChatCompletionChunk:
        choices = (
            []
            if usage
            else [
                ChatChunkChoice(index=choice, delta=delta, finish_reason=finish, logprobs=logprobs)
            ]
        )
        return ChatCompletionChunk(
            id=chunk_id, created=created, model=prepared.model_id, choices=choices, usage=usage
        )

    n = len(prepared.generations)
    content = [TextChunks(lambda text, i=i: chunk(i, ChatDelta(content=text))) for i in range(n)]
    thought = [
        TextChunks(lambda text, i=i: chunk(i, ChatDelta(reasoning_content=text, reasoning=text)))
        for i in range(n)
    ]
    readers = [prepared.reader() for _ in range(n)]
    # Logprobs of tokens whose text a reader holds back, sent with what it releases.
    held: list[list] = [[] for _ in range(n)]
    finished: list[Finished] = []

    def text_chunk(choice: int, piece: Piece, logprobs: list) -> Chunk:
        text = piece.text
        if piece.kind == "reasoning":
            if not logprobs:
                return thought[choice].event(text)
            delta = ChatDelta(reasoning_content=text, reasoning=text)
        elif not logprobs:
            return content[choice].event(text)
        else:
            delta = ChatDelta(content=text)
        return chunk(choice, delta, logprobs=chat_logprobs(logprobs)).model_dump_json()

    for choice in range(n):
        yield chunk(choice, ChatDelta(role="assistant", content="")).model_dump_json()
    async for choice, event in prepared.all_events():
        if isinstance(event, TextDelta):
            held[choice].extend(event.logprobs)
            for piece in readers[choice].feed(event.text):
                yield text_chunk(choice, piece, held[choice])
                held[choice] = []
        elif isinstance(event, Finished):
            finished.append(event)
            pieces, reply = readers[choice].finish(event.reason)
            for piece in pieces:
                yield text_chunk(choice, piece, held[choice])
                held[choice] = []
            for delta in call_deltas(reply, legacy):
                yield chunk(choice, delta).model_dump_json()
            yield chunk(choice, ChatDelta(), finish=finish_reason(reply, legacy)).model_dump_json()
    if include_usage and finished:
        yield chunk(0, ChatDelta(), usage=usage_of(*finished)).model_dump_json()


def whole_completion(
    prepared: PreparedGeneration, collected: list[Collected], legacy: bool = False
) -> ChatCompletion:
    """Every choice, whole, as one chat completion."""
    choices = []
    for index, whole in enumerate(collected):
        reply = prepared.read(whole.text, whole.finished.reason)
        logprobs = chat_logprobs(whole.logprobs) if prepared.logprobs is not None else None
        choices.append(
            ChatChoice(
                index=index,
                message=assistant_message(reply, legacy),
                logprobs=logprobs,
                finish_reason=finish_reason(reply, legacy),
            )
        )
    return ChatCompletion(
        model=prepared.model_id,
        choices=choices,
        usage=usage_of(*(whole.finished for whole in collected)),
    )
