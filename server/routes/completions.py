"""POST /v1/completions: the raw prompt, no chat format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from hearth.server.generation import PreparedGeneration, collect_all, prepare_completion
from hearth.server.logprobs import completion_logprobs
from hearth.server.protocol import Completion, CompletionChoice, CompletionRequest
from hearth.server.registry import ModelRegistry
from hearth.server.routes.disconnect import unless_disconnected
from hearth.server.sse import completion_chunks, event_stream, usage_of
from hearth.server.state import Registry

router = APIRouter()


@router.post("/v1/completions", response_model=None)
async def create_completion(
    body: CompletionRequest, request: Request, registry: Registry
) -> Completion | Response:
    # A client that hangs up while its request waits for the model leaves the model queue.
    prepared = await unless_disconnected(request, _prepared(registry, body))
    echo = body.prompt_text() if body.echo else ""
    if body.stream:
        return event_stream(completion_chunks(prepared, body.include_usage(), echo))
    collected = await unless_disconnected(request, collect_all(prepared))
    choices = [
        CompletionChoice(
            index=index,
            text=echo + whole.text,
            finish_reason=whole.finished.reason,
            logprobs=None if body.logprobs is None
            else completion_logprobs(whole.logprobs, body.logprobs),
        )
        for index, whole in enumerate(collected)
    ]
    return Completion(
        model=prepared.model_id,
        choices=choices,
        usage=usage_of(*(whole.finished for whole in collected)),
    )


async def _prepared(registry: ModelRegistry, body: CompletionRequest) -> PreparedGeneration:
    async with registry.acquire(body.model) as handle:
        return await prepare_completion(handle, body)
