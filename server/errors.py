"""Errors as HTTP: the one place an exception becomes a status code and an error body.

The runtime raises errors that say what went wrong (`hearth.runtime.errors`); this module
alone decides their status codes and wire shape, through one table per API: OpenAI's, and
Anthropic's for the Messages API. Which API's shape an answer takes follows from the
request's path (`error_response`), so a 404, a 401 or a 413 under /v1/messages is in
Anthropic's shape too. The few errors only HTTP can have (a missing API key, a refused Host,
a body too large, a route that does not exist) are defined here beside the tables.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from hearth.engine.errors import EngineError
from hearth.runtime.batch.runner import BatchNotCancellable
from hearth.runtime.errors import (
    ChatTemplateBroken,
    Draining,
    DrainTimeout,
    EngineFailure,
    EngineNotReady,
    HearthError,
    InvalidRequest,
    ModelFileMissing,
    ModelLoadFailed,
    ModelNotFound,
    NotFound,
    Overloaded,
    as_hearth_error,
)
from hearth.server.anthropic import protocol as anthropic
from hearth.server.disconnect import ClientGone
from hearth.server.openai.protocol import ErrorDetail, ErrorResponse


class Unauthorized(HearthError):
    code = "invalid_api_key"


class HostNotAllowed(HearthError):
    code = "host_not_allowed"


class MethodNotAllowed(HearthError):
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


class PayloadTooLarge(HearthError):
    code = "request_too_large"


class HTTPProblem(HearthError):
    """An error Starlette itself raised, with the status it chose."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Kind:
    status: int
    type: str  # the API's error type


CLIENT = "invalid_request_error"
SERVER = "server_error"

# Each error class's status and OpenAI type; a subclass takes its nearest listed ancestor's.
OPENAI_KINDS: dict[type[HearthError], Kind] = {
    InvalidRequest: Kind(400, CLIENT),
    Unauthorized: Kind(401, CLIENT),
    HostNotAllowed: Kind(403, CLIENT),
    ModelNotFound: Kind(404, CLIENT),
    ModelFileMissing: Kind(404, CLIENT),
    NotFound: Kind(404, CLIENT),
    MethodNotAllowed: Kind(405, CLIENT),
    BatchNotCancellable: Kind(409, CLIENT),  # OpenAI's answer to cancelling a finished batch
    PayloadTooLarge: Kind(413, CLIENT),
    Overloaded: Kind(503, SERVER),
    DrainTimeout: Kind(503, SERVER),
    EngineNotReady: Kind(503, SERVER),
    ModelLoadFailed: Kind(500, SERVER),
    ChatTemplateBroken: Kind(500, SERVER),
    EngineFailure: Kind(500, SERVER),
    HearthError: Kind(500, SERVER),
}

# Anthropic's type for each status it documents; any other 4xx is an invalid request.
ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def _anthropic(status: int) -> Kind:
    return Kind(status, ANTHROPIC_TYPES.get(status, CLIENT if status < 500 else "api_error"))


# The same classes under Anthropic's statuses. A full queue is Anthropic's 529 (its SDKs
# and Claude Code retry it as "overloaded"); a model still loading or a server shutting down
# stays 503, which proxies and load balancers understand as "try another".
ANTHROPIC_KINDS: dict[type[HearthError], Kind] = {
    **{cls: _anthropic(kind.status) for cls, kind in OPENAI_KINDS.items()},
    Overloaded: _anthropic(529),
    Draining: _anthropic(503),
}


def _openai(status: int) -> Kind:
    return Kind(status, CLIENT if status < 500 else SERVER)


def kind_of(
    error: HearthError,
    kinds: dict[type[HearthError], Kind] = OPENAI_KINDS,
    by_status: Callable[[int], Kind] = _openai,
) -> Kind:
    """`by_status`: the kind of an error Starlette raised, from the status it chose."""
    if isinstance(error, HTTPProblem):
        return by_status(error.status)
    for cls in type(error).__mro__:
        if cls in kinds:
            return kinds[cls]
    raise TypeError(f"no error kind for {type(error).__name__}")


Body = TypeVar("Body", bound=BaseModel)


@dataclass(frozen=True)
class MappedError(Generic[Body]):
    """An error as one API answers it: its status, its body and extra headers."""

    status: int
    body: Body
    headers: dict[str, str]


def headers_for(error: HearthError) -> dict[str, str]:
    """What the error tells a client beyond its body, whatever the API."""
    headers: dict[str, str] = {}
    if isinstance(error, Overloaded):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allow)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return headers


def _known(error: Exception) -> HearthError:
    known = as_hearth_error(error)
    if known is None:
        # Unknown failures keep their details in the server log, not in the response.
        known = HearthError("The server had an error while processing your request.")
    return known


def to_openai(error: Exception) -> MappedError[ErrorResponse]:
    """Map any exception to a status, an OpenAI error body and extra headers."""
    known = _known(error)
    kind = kind_of(known)
    detail = ErrorDetail(message=known.message, type=kind.type, param=known.param, code=known.code)
    return MappedError(kind.status, ErrorResponse(error=detail), headers_for(known))


def to_anthropic(error: Exception) -> MappedError[anthropic.AnthropicErrorResponse]:
    """Map any exception to a status, an Anthropic error body and extra headers."""
    known = _known(error)
    kind = kind_of(known, ANTHROPIC_KINDS, _anthropic)
    detail = anthropic.AnthropicErrorDetail(type=kind.type, message=known.message)  # type: ignore[arg-type]
    return MappedError(
        kind.status, anthropic.AnthropicErrorResponse(error=detail), headers_for(known)
    )


# The routes that answer errors in another API's shape than OpenAI's, by path: a path
# equal to the prefix or under it.
ERROR_SHAPES: tuple[tuple[str, Callable[[Exception], MappedError]], ...] = (
    ("/v1/messages", to_anthropic),
)


def mapped_for(path: str, error: Exception) -> MappedError:
    """The error as the API that `path` belongs to answers it."""
    for prefix, mapping in ERROR_SHAPES:
        if path == prefix or path.startswith(prefix + "/"):
            return mapping(error)
    return to_openai(error)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

log = logging.getLogger(__name__)


class _ErrorJSON(JSONResponse):
    # ASCII escapes: an error body must go out even when a message quotes text that UTF-8
    # cannot hold (a lone surrogate), where the default UTF-8 rendering would raise.
    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(error: Exception, path: str = "") -> JSONResponse:
    """The error as an HTTP answer, in the shape of the API that `path` belongs to."""
    mapped = mapped_for(path, error)
    return _ErrorJSON(mapped.body.model_dump(), status_code=mapped.status, headers=mapped.headers)


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
    async def hearth_error(request: Request, error: HearthError) -> JSONResponse:
        return error_response(error, request.url.path)

    @app.exception_handler(EngineError)
    async def engine_error(request: Request, error: EngineError) -> JSONResponse:
        return error_response(error, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(error), request.url.path)

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, __: ClientGone) -> Response:
        # Nobody is listening; nginx's 499 ("client closed request") keeps the access log honest.
        return Response(status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        path = request.url.path
        if error.status_code in (404, 405):
            return error_response(_no_route(request), path)
        return error_response(HTTPProblem(str(error.detail), status=error.status_code), path)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error while serving a request")
        return error_response(error, request.url.path)
