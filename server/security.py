"""Request guards: the API key and the body size limit."""

from __future__ import annotations

import hmac

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.server.errors import PayloadTooLarge, Unauthorized, error_response
from hearth.server.state import server_state


def require_api_key(request: Request) -> None:
    """The key from `Authorization: Bearer KEY` (OpenAI's clients) or `x-api-key: KEY`
    (Anthropic's SDKs; Claude Code sends either, by which variable holds the key)."""
    expected = server_state(request).settings.api_key
    if not expected:
        return
    given = [key for key in (_bearer(request), request.headers.get("x-api-key")) if key]
    if not given:
        raise Unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer KEY' or "
            "'x-api-key: KEY'."
        )
    # Every key given is compared, so the time taken does not tell which header was right.
    matches = [hmac.compare_digest(key.strip().encode(), expected.encode()) for key in given]
    if not any(matches):
        raise Unauthorized("Incorrect API key provided.")


def _bearer(request: Request) -> str | None:
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given if scheme.lower() == "bearer" and given else None


class BodyLimit:
    """Refuses bodies over `limit` bytes with 413, declared or streamed.

    (FastAPI's own max_body_size answers in plain text; clients expect OpenAI's shape.)

    A declared Content-Length is checked before anything is read; a chunked body is counted
    as it arrives, and the read fails as soon as it passes the limit. `path_limits` gives
    some paths a limit of their own (file uploads).
    """

    def __init__(self, app: ASGIApp, limit: int, path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.path_limits = path_limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.path_limits.get(scope["path"], self.limit)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        seen = 0
        exceeded = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    exceeded = True
                    raise self._error(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it could not read is replaced below
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
        if exceeded and not started:
            await self._refuse(scope, send, limit)

    def _error(self, limit: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than {limit} bytes.")

    async def _refuse(self, scope: Scope, send: Send, limit: int) -> None:
        response = error_response(self._error(limit), scope["path"])

        async def nothing_to_read() -> Message:
            return {"type": "http.disconnect"}

        await response(scope, nothing_to_read, send)
