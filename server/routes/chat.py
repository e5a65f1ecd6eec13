"""POST /v1/chat/completions."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from hearth.server.generation import ChatPolicy, collect, prepare_chat
from hearth.server.protocol import (
    DROPPED_MESSAGES_HEADER,
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
)
from hearth.server.routes.disconnect import unless_disconnected
from hearth.server.sse import chat_chunks, event_stream, usage_of
from hearth.server.state import Registry, server_state
from hearth.server.tools.reply import assistant_reply

router = APIRouter()


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(
    body: ChatCompletionRequest, request: Request, registry: Registry
) -> ChatCompletion | Response:
    async with registry.acquire(body.model) as handle:
        prepared = await prepare_chat(handle, body, ChatPolicy.of(server_state(request).settings))
    headers = {DROPPED_MESSAGES_HEADER: str(prepared.dropped_messages)}
    if body.stream:
        return event_stream(chat_chunks(prepared, body.include_usage()), headers=headers)
    text, finished = await unless_disconnected(request, collect(prepared))
    message, finish_reason = assistant_reply(prepared.tools, text, finished.reason)
    completion = ChatCompletion(
        model=prepared.model_id,
        choices=[ChatChoice(message=message, finish_reason=finish_reason)],
        usage=usage_of(finished),
    )
    response = Response(completion.model_dump_json(), media_type="application/json")
    response.headers.update(headers)
    return response
