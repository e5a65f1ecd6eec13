"""POST /v1/responses, GET and DELETE /v1/responses/{id}: the Responses API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response as HTTPResponse
from sse_starlette import EventSourceResponse

from hearth.runtime.pipeline import ChatPolicy
from hearth.server.access_log import observer_of
from hearth.server.disconnect import unless_disconnected
from hearth.server.openai.responses import serving
from hearth.server.openai.responses.protocol import Response, ResponseRequest
from hearth.server.openai.responses.store import ResponseStore
from hearth.server.state import Registry, server_state
from hearth.server.streaming import stream_response

router = APIRouter()


def _store(request: Request) -> ResponseStore:
    return server_state(request).responses


@router.post("/v1/responses", response_model=None)
async def create_response(
    body: ResponseRequest, request: Request, registry: Registry
) -> Response | EventSourceResponse:
    state = server_state(request)
    store, observer = state.responses, observer_of(request)
    policy = ChatPolicy.of(state.settings)
    if body.stream:
        # A client that hangs up while its request waits for the model leaves the model queue.
        prepared, conversation = await unless_disconnected(
            request, serving.start(registry, store, body, policy, observer)
        )
        source = serving.ResponseStream(body, prepared, store, conversation)
        return stream_response(source, drain=state.drain)
    return await unless_disconnected(
        request, serving.create(registry, store, body, policy, observer)
    )


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> Response:
    return _store(request).get(response_id).response


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> HTTPResponse:
    _store(request).delete(response_id)
    return HTTPResponse(
        content=f'{{"id": "{response_id}", "object": "response", "deleted": true}}',
        media_type="application/json",
    )
