"""Hearth's error taxonomy, and the one place that turns an error into OpenAI's shape.

Every layer raises these types; `to_openai` alone decides the status code and the JSON.
Nothing anywhere decides a status by reading an exception's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import singledispatch

from hearth.server.engine import errors as engine
from hearth.server.protocol import ErrorDetail, ErrorResponse


class HearthError(Exception):
    """Base class. Subclasses fix the status and OpenAI error type."""

    status: int = 500
    type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(HearthError):
    status = 400
    type = "invalid_request_error"


class ContextOverflow(InvalidRequest):
    code = "context_length_exceeded"

    def __init__(self, *, limit: int, prompt_tokens: int, max_tokens: int | None = None) -> None:
        asked = f"{prompt_tokens} tokens in the prompt"
        if max_tokens:
            asked = f"{prompt_tokens + max_tokens} tokens ({asked}, {max_tokens} for the completion)"
        super().__init__(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{asked}. Please shorten the messages or lower max_tokens.",
            param="messages",
        )
        self.limit = limit
        self.prompt_tokens = prompt_tokens


class Unauthorized(HearthError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class HostNotAllowed(HearthError):
    status = 403
    type = "invalid_request_error"
    code = "host_not_allowed"


class ModelNotFound(HearthError):
    status = 404
    type = "invalid_request_error"
    code = "model_not_found"

    def __init__(self, model: str, available: list[str]) -> None:
        super().__init__(
            f"The model '{model}' does not exist. Available: {', '.join(available)}.",
            param="model",
        )


class ModelFileMissing(HearthError):
    """A library model whose file is gone (its Hugging Face cache was cleaned).

    404, not 500 or 503: nothing failed in the server and retrying will not help until
    someone fetches the file again. A code of its own, not model_not_found, because the id
    is right and the message says the one command that brings the model back.
    """

    status = 404
    type = "invalid_request_error"
    code = "model_file_missing"

    def __init__(self, model: str, path: str, fetch_command: str) -> None:
        super().__init__(
            f"The model '{model}' is in the library but its file {path} is gone; "
            f"`{fetch_command}` fetches it again.",
            param="model",
        )


class NotFound(HearthError):
    status = 404
    type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(HearthError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


class PayloadTooLarge(HearthError):
    status = 413
    type = "invalid_request_error"
    code = "request_too_large"


class Overloaded(HearthError):
    """The wait queue is full. The client should retry after `retry_after` seconds."""

    status = 503
    type = "server_error"
    code = "server_overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Draining(Overloaded):
    """The server is shutting down: it finishes running requests and takes no new ones."""

    code = "server_shutting_down"


class EngineNotReady(HearthError):
    status = 503
    type = "server_error"
    code = "model_loading"


class ModelLoadFailed(HearthError):
    """A model of the library could not be loaded; the server goes on serving the others."""

    status = 500
    type = "server_error"
    code = "model_load_failed"

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"The model '{model}' could not be loaded: {reason}", param="model")


class PromptRenderError(HearthError):
    """The model's own chat template failed on this conversation."""

    status = 400
    type = "invalid_request_error"
    code = "chat_template_error"


class ChatTemplateBroken(HearthError):
    """The model's chat template ran past its time or size budget. The template, not the
    request, is at fault (any conversation would do it), so this is a server error."""

    status = 500
    type = "server_error"
    code = "chat_template_failed"


class DrainTimeout(HearthError):
    """The drain timeout ended a stream that was still running."""

    status = 503
    type = "server_error"
    code = "server_shutting_down"


class EngineFailure(HearthError):
    """llama.cpp failed while generating; the request cannot continue."""

    status = 500
    type = "server_error"
    code = "engine_failure"


@dataclass(frozen=True)
class OpenAIError:
    status: int
    body: ErrorResponse
    headers: dict[str, str]


@singledispatch
def from_engine(error: engine.EngineError) -> HearthError:
    """The engine's own errors, in HTTP terms (the engine raises them knowing no HTTP)."""
    return EngineFailure(error.message)


@from_engine.register
def _(error: engine.ContextExceeded) -> HearthError:
    return ContextOverflow(
        limit=error.limit, prompt_tokens=error.prompt_tokens, max_tokens=error.max_tokens
    )


@from_engine.register
def _(error: engine.QueueFull) -> HearthError:
    return Overloaded(error.message, retry_after=error.retry_after)


@from_engine.register
def _(error: engine.InvalidTokens) -> HearthError:
    return InvalidRequest(error.message, param="tokens")


@from_engine.register
def _(error: engine.NotStarted) -> HearthError:
    return EngineNotReady(error.message)


def to_openai(error: Exception) -> OpenAIError:
    """Map any exception to a status, an OpenAI error body and extra headers."""
    if isinstance(error, engine.EngineError):
        error = from_engine(error)
    if not isinstance(error, HearthError):
        # Unknown failures keep their details in the server log, not in the response.
        error = HearthError("The server had an error while processing your request.")
    headers: dict[str, str] = {}
    if isinstance(error, Overloaded):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, MethodNotAllowed):
        headers["Allow"] = ", ".join(error.allow)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    detail = ErrorDetail(message=error.message, type=error.type, param=error.param, code=error.code)
    return OpenAIError(status=error.status, body=ErrorResponse(error=detail), headers=headers)
