"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from hearth.runtime.observer import GenerationObserver
from hearth.runtime.pipeline import ChatPolicy, PreparedGeneration, collect_all, prepare_chat
from hearth.runtime.registry import ModelRegistry
from hearth.server.access_log import observer_of
from hearth.server.disconnect import unless_disconnected
from hearth.server.openai.chat.protocol import ChatCompletion, ChatCompletionRequest
from hearth.server.openai.chat.serving import chat_chunks, whole_completion
from hearth.server.openai.protocol import DROPPED_MESSAGES_HEADER
from hearth.server.openai.streaming import OpenAIStream
from hearth.server.state import Registry, server_state
from hearth.server.streaming import stream_response

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, registry: Registry
) -> ChatCompletion | Response:
    state = server_state(request)
    # A client that hangs up while its request waits for the model leaves the model queue.
    policy = ChatPolicy.of(state.settings)
    prepared = await unless_disconnected(
        request, _prepared(registry, body, policy, observer_of(request))
    )
    headers = {DROPPED_MESSAGES_HEADER: str(prepared.dropped_messages)}
    legacy = body.legacy_functions()
    if body.stream:
        chunks = chat_chunks(prepared, body.include_usage(), legacy)
        return stream_response(OpenAIStream(prepared, chunks), drain=state.drain, headers=headers)
    collected = await unless_disconnected(request, collect_all(prepared))
    completion = whole_completion(prepared, collected, legacy)
    response = Response(completion.model_dump_json(), media_type="application/json")
    response.headers.update(headers)
    return response


async def _prepared(
    registry: ModelRegistry,
    body: ChatCompletionRequest,
    policy: ChatPolicy,
    observer: GenerationObserver,
) -> PreparedGeneration:
    async with registry.acquire(body.model) as handle:
        return await prepare_chat(handle, body.to_runtime(), policy, observer)
