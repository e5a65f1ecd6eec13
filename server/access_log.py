"""Request ids and the access log: one structured line per request, when its body ends.

Each request gets an id, the client's `X-Request-Id` when it sent a sane one, else a new
one, echoed in the response's `X-Request-Id`. The request's `RequestRecord` rides in the
ASGI scope's state; a route hands it to the chat pipeline as the generation's observer
(`observer_of`), and the pipeline fills in what only it knows (model, tokens, time to first
token). The line is written when the last byte of the body has gone, so a stream's line
carries its whole duration and token counts.
`--log-format json` writes every log line as one JSON object, for log shippers.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hearth.runtime.observer import NO_OBSERVER, GenerationObserver

log = logging.getLogger("hearth.access")

REQUEST_ID_HEADER = "x-request-id"
# What a client's id may be: short, and nothing that could forge a log line or header.
_CLIENT_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


@dataclass
class RequestRecord:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.monotonic)
    route: str = "unmatched"
    status: int = 500
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    first_token_at: float | None = None
    finished_at: float | None = None  # when the generation ended (its last token)

    def model_chosen(self, model_id: str) -> None:
        self.model = model_id

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()

    def finished(self, prompt_tokens: int, completion_tokens: int) -> None:
        """One choice ended; with n > 1 each adds its tokens (the prompt is the same one)."""
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = (self.completion_tokens or 0) + completion_tokens
        self.finished_at = time.monotonic()

    @property
    def ttft_seconds(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.started

    @property
    def inter_token_seconds(self) -> float | None:
        """The mean time between this request's streamed tokens after the first."""
        if self.first_token_at is None or self.finished_at is None:
            return None
        if not self.completion_tokens or self.completion_tokens < 2:
            return None
        return (self.finished_at - self.first_token_at) / (self.completion_tokens - 1)

    def fields(self) -> dict[str, object]:
        ttft = self.ttft_seconds
        return {
            "request_id": self.request_id,
            "method": self.method,
            "route": self.route,
            "model": self.model,
            "status": self.status,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "ttft_ms": None if ttft is None else round(ttft * 1000, 1),
            "total_ms": round((time.monotonic() - self.started) * 1000, 1),
        }


# Where a request's record rides in the ASGI scope's state.
_STATE_KEY = "hearth_access"


def observer_of(request: Request) -> GenerationObserver:
    """The request's access record as a generation observer (a no-op outside AccessLog)."""
    record = request.scope.get("state", {}).get(_STATE_KEY)
    return record if record is not None else NO_OBSERVER


def request_id_of(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER.encode():
            given = value.decode("latin-1")
            if _CLIENT_ID.fullmatch(given):
                return given
    return uuid.uuid4().hex


class AccessLog:
    """The outermost middleware: ids every request, logs it once, tells the observers."""

    def __init__(
        self, app: ASGIApp, observers: Sequence[Callable[[RequestRecord], None]] = ()
    ) -> None:
        self.app = app
        self.observers = observers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        record = RequestRecord(request_id_of(scope), scope["method"], scope["path"])
        scope.setdefault("state", {})[_STATE_KEY] = record

        async def with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                headers = [
                    (k, v) for k, v in message.get("headers", []) if k != REQUEST_ID_HEADER.encode()
                ]
                headers.append((REQUEST_ID_HEADER.encode(), record.request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, with_id)
        finally:
            route = scope.get("route")
            record.route = getattr(route, "path", None) or "unmatched"
            if record.route != "/metrics":  # scrapes every few seconds would drown the log
                log.info(_text(record.fields()), extra={"access": record.fields()})
            for observe in self.observers:
                observe(record)


def _text(fields: dict[str, object]) -> str:
    return " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and an access line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            entry.update(access)
        else:
            entry["message"] = record.getMessage()
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(log_format: str, level: str) -> dict:
    """Hearth's handlers, and uvicorn's log config to match (its own access log is off:
    Hearth's line replaces it)."""
    formatter = (
        JsonFormatter()
        if log_format == "json"
        else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "uvicorn.access": {"level": "WARNING"},
        },
    }
