"""The API description at /openapi.json: what the server really answers.

FastAPI documents a 200 and a 422 for every route; Hearth never sends a 422 (a bad body is
a 400 in OpenAI's shape) and sends errors FastAPI cannot know of. So each API route lists
the error statuses it can answer, all with the OpenAI error body, and the 422 goes.
/docs and /redoc stay off: FastAPI's pages load their scripts from a CDN, and nothing
Hearth serves may reach beyond the machine.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hearth.server.openai.protocol import ErrorResponse

_ERRORS = {
    400: "Invalid request: malformed JSON, a bad value (`param` names it), or a prompt longer "
    "than the context (`context_length_exceeded`).",
    401: "Missing or wrong API key (`invalid_api_key`), when the server has one.",
    403: "A Host header that is not this machine's (`host_not_allowed`).",
    404: "Unknown model (`model_not_found`) or id.",
    409: "Cancelling a batch that has finished (`batch_not_cancellable`).",
    413: "Body over --max-body-bytes, or a file over --max-file-bytes (`request_too_large`).",
    500: "The model failed to load or generate, or its chat template is broken.",
    503: "The model is loading, the queue is full or the server is draining; see Retry-After.",
}

API_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in _ERRORS.items()
}
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"description": "Loading, or draining before shutdown."},
}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                routes=app.routes,
                description="An OpenAI-compatible API served by Hearth on this machine.",
            )
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            for unused in ("HTTPValidationError", "ValidationError"):
                components.pop(unused, None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
