"""POST /v1/completions: the raw prompt, no chat format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from hearth.server.generation import collect, prepare_completion
from hearth.server.protocol import Completion, CompletionChoice, CompletionRequest
from hearth.server.routes.disconnect import unless_disconnected
from hearth.server.sse import completion_chunks, event_stream, usage_of
from hearth.server.state import Registry

router = APIRouter()


@router.post("/v1/completions", response_model=None)
async def create_completion(
    body: CompletionRequest, request: Request, registry: Registry
) -> Completion | Response:
    async with registry.acquire(body.model) as handle:
        prepared = await prepare_completion(handle, body)
    echo = body.prompt_text() if body.echo else ""
    if body.stream:
        return event_stream(completion_chunks(prepared, body.include_usage(), echo))
    text, finished = await unless_disconnected(request, collect(prepared))
    return Completion(
        model=prepared.model_id,
        choices=[CompletionChoice(text=echo + text, finish_reason=finished.reason)],
        usage=usage_of(finished),
    )
