"""POST /v1/responses, GET and DELETE /v1/responses/{id}: the Responses API."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response as HTTPResponse
from hearth.server.generation import ChatPolicy
from hearth.server.responses import serving
from hearth.server.responses.protocol import Response, ResponseRequest
from hearth.server.responses.store import ResponseStore
from hearth.server.routes.disconnect import unless_disconnected
from hearth.server.state import Registry, server_state
from sse_starlette import EventSourceResponse

router = APIRouter()


def _store(request: Request) -> ResponseStore:
    return server_state(request).responses


@router.post("/v1/responses", response_model=None)
async def create_response(
    body: ResponseRequest, request: Request, registry: Registry
) -> Response | EventSourceResponse:
    store = _store(request)
    policy = ChatPolicy.of(server_state(request).settings)
    if body.stream:
        prepared, conversation = await unless_disconnected(
            request, serving.start(registry, store, body, policy))
        return EventSourceResponse(
            serving.events(body, prepared, store, conversation), sep="\n", ping=15)
    return await unless_disconnected(
        request, serving.create(registry, store, body, policy))


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> Response:
    return _store(request).get(response_id).response


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> HTTPResponse:
    _store(request).delete(response_id)
    return HTTPResponse(
        content=f'{{"id": "{response_id}", "object": "response", "deleted": true}}',
        media_type="application/json")
