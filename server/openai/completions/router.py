"""POST /v1/completions: the raw prompt, no chat format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from hearth.runtime.observer import GenerationObserver
from hearth.runtime.pipeline import PreparedGeneration, collect_all, prepare_completion
from hearth.runtime.registry import ModelRegistry
from hearth.server.access_log import observer_of
from hearth.server.disconnect import unless_disconnected
from hearth.server.openai.completions.protocol import Completion, CompletionRequest
from hearth.server.openai.completions.serving import completion_chunks, whole_completion
from hearth.server.openai.streaming import OpenAIStream
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
    return whole_completion(prepared, collected, body)


async def _prepared(
    registry: ModelRegistry, body: CompletionRequest, observer: GenerationObserver
) -> PreparedGeneration:
    async with registry.acquire(body.model) as handle:
        return await prepare_completion(handle, body.to_runtime(), observer)
