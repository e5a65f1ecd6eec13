"""POST /v1/completions: the raw prompt, no chat format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from hearth.runtime.observer import GenerationObserver
from hearth.runtime.pipeline import PreparedGeneration, collect_all, prepare_completion
from hearth.runtime.registry import ModelRegistry
from hearth.server.access_log import observer_of
from hearth.server.disconnect import unless_disconnected
from hearth.server.openai.completions.protocol import (
    Completion,
    CompletionChoice,
    CompletionRequest,
)
from hearth.server.openai.completions.serving import completion_chunks
from hearth.server.openai.logprobs import completion_logprobs
from hearth.server.openai.streaming import OpenAIStream, usage_of
from hearth.server.state import Registry, server_state
from hearth.server.streaming import stream_response

router = APIRouter()


@router.post("/v1/completions", response_model=None)
async def create_completion(
    body: CompletionRequest, request: Request, registry: Registry
) -> Completion | Response:
    # A client that hangs up while its request waits for the model leaves the model queue.
    prepared = await unless_disconnected(request, _prepared(registry, body, observer_of(request)))
    echo = body.prompt_text() if body.echo else ""
    if body.stream:
        chunks = completion_chunks(prepared, body.include_usage(), echo)
        return stream_response(OpenAIStream(prepared, chunks), drain=server_state(request).drain)
    collected = await unless_disconnected(request, collect_all(prepared))
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


async def _prepared(
    registry: ModelRegistry, body: CompletionRequest, observer: GenerationObserver
) -> PreparedGeneration:
    async with registry.acquire(body.model) as handle:
        return await prepare_completion(handle, body.to_runtime(), observer)
