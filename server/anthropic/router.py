"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API.

Errors under these paths are in Anthropic's shape (server/errors.py decides by the path).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from hearth.runtime.pipeline import ChatPolicy, collect
from hearth.server.access_log import observer_of
from hearth.server.anthropic import serving
from hearth.server.anthropic.protocol import (
    AnthropicErrorResponse,
    CountTokensRequest,
    Message,
    MessagesRequest,
    TokenCount,
)
from hearth.server.anthropic.streaming import PING, MessageStream
from hearth.server.disconnect import unless_disconnected
from hearth.server.openai.protocol import DROPPED_MESSAGES_HEADER
from hearth.server.state import Registry, server_state
from hearth.server.streaming import stream_response

# What the Messages API answers besides a message, in Anthropic's error shape.
_ERRORS = {
    400: "invalid_request_error: malformed JSON, a bad value or block (the message names it), "
    "or a prompt longer than the context.",
    401: "authentication_error: missing or wrong API key (x-api-key or Authorization: Bearer).",
    403: "permission_error: a Host header that is not this machine's.",
    404: "not_found_error: unknown model or path.",
    413: "request_too_large: body over --max-body-bytes.",
    500: "api_error: the model failed to load or generate, or its chat template is broken.",
    503: "overloaded_error: the model is loading or the server is draining; see Retry-After.",
    529: "overloaded_error: the queue is full; see Retry-After.",
}
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": AnthropicErrorResponse, "description": description}
    for status, description in _ERRORS.items()
}

router = APIRouter(responses=ERROR_RESPONSES)


@router.post("/v1/messages", response_model=None)
async def create_message(
    body: MessagesRequest, request: Request, registry: Registry
) -> Message | Response:
    state = server_state(request)
    policy = ChatPolicy.of(state.settings)
    # A client that hangs up while its request waits for the model leaves the model queue.
    prepared = await unless_disconnected(
        request, serving.prepare(registry, body, policy, observer_of(request))
    )
    headers = {DROPPED_MESSAGES_HEADER: str(prepared.dropped_messages)}
    if body.stream:
        source = MessageStream(body, prepared)
        return stream_response(source, drain=state.drain, headers=headers, ping=PING)
    text, finished = await unless_disconnected(request, collect(prepared))
    message = serving.whole_message(prepared, body, text, finished)
    response = Response(message.model_dump_json(), media_type="application/json")
    response.headers.update(headers)
    return response


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, registry: Registry) -> TokenCount:
    return await serving.count_tokens(registry, body)
