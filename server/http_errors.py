"""Errors as HTTP: the one place an exception becomes a status code and an OpenAI body."""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from hearth.server.engine.errors import EngineError
from hearth.server.errors import (
    HearthError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    to_openai,
)
from hearth.server.routes.disconnect import ClientGone
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

log = logging.getLogger(__name__)


class _ErrorJSON(JSONResponse):
    # ASCII escapes: an error body must go out even when a message quotes text that UTF-8
    # cannot hold (a lone surrogate), where the default UTF-8 rendering would raise.
    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(error: Exception) -> JSONResponse:
    mapped = to_openai(error)
    return _ErrorJSON(
        mapped.body.model_dump(), status_code=mapped.status, headers=mapped.headers
    )


def validation_error(error: RequestValidationError) -> InvalidRequest:
    """Pydantic's first complaint, as OpenAI words it: a message and the parameter's path."""
    first = error.errors()[0]
    location = [part for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        return InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON."
        )
    param = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in location).lstrip(".")
    # Our own validators raise ValueError, which pydantic reports as "Value error, ...".
    message = first.get("msg", "invalid value").removeprefix("Value error, ")
    return InvalidRequest(f"Invalid value for '{param or 'body'}': {message}", param=param or None)


def _no_route(request: Request) -> HearthError:
    """404 for a path no route serves, 405 with Allow for a route asked with the wrong method.

    The router's own answer cannot be trusted here: the chat page's static mount at "/"
    matches every path, so it answered 405 to `POST /v1/responses` and 404 to
    `GET /v1/chat/completions`. The API routes' own paths decide instead.
    """
    path = request.url.path
    # Ask each route (FastAPI wraps included routers) whether it takes the path by method.
    allowed = [
        method
        for method in _METHODS
        if any(
            not isinstance(route, Mount)
            and route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.routes
        )
    ]
    if allowed and request.method not in allowed:
        return MethodNotAllowed(
            f"Method {request.method} is not allowed for {path}.", allow=allowed
        )
    return NotFound(f"No route for {request.method} {path}.")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HearthError)
    async def hearth_error(_: Request, error: HearthError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(EngineError)
    async def engine_error(_: Request, error: EngineError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(error))

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, __: ClientGone) -> Response:
        # Nobody is listening; nginx's 499 ("client closed request") keeps the access log honest.
        return Response(status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code in (404, 405):
            return error_response(_no_route(request))
        wrapped = HearthError(str(error.detail))
        wrapped.status = error.status_code
        wrapped.type = "invalid_request_error"
        return error_response(wrapped)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return error_response(error)
