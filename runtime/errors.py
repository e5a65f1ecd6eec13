"""What the runtime refuses or fails with, in its own terms.

These errors know no HTTP: each says what went wrong and, where a request field was at
fault, which (`param`). Every API the server speaks maps them to its own error shape and
status code in one place (`hearth.server.errors`), and `hearth chat` shows their message.
`code` is the stable, machine-readable name of the failure; an API may pass it on.
Nothing anywhere decides what to do with an error by reading its message.
"""

from __future__ import annotations

from functools import singledispatch

from hearth.engine import errors as engine


class HearthError(Exception):
    """Base class: a message a user can read, the field at fault, and a stable code."""

    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(HearthError):
    """The request itself is wrong; sending it again will not help."""


class ContextOverflow(InvalidRequest):
    code = "context_length_exceeded"

    def __init__(self, *, limit: int, prompt_tokens: int, max_tokens: int | None = None) -> None:
        asked = f"{prompt_tokens} tokens in the prompt"
        if max_tokens:
            asked = (
                f"{prompt_tokens + max_tokens} tokens ({asked}, {max_tokens} for the completion)"
            )
        super().__init__(
            f"This model's maximum context length is {limit} tokens. However, you requested "
            f"{asked}. Please shorten the messages or lower max_tokens.",
            param="messages",
        )
        self.limit = limit
        self.prompt_tokens = prompt_tokens


class PromptRenderError(InvalidRequest):
    """The model's own chat template failed on this conversation."""

    code = "chat_template_error"


class ModelNotFound(HearthError):
    code = "model_not_found"

    def __init__(self, model: str, available: list[str]) -> None:
        super().__init__(
            f"The model '{model}' does not exist. Available: {', '.join(available)}.",
            param="model",
        )


class ModelFileMissing(HearthError):
    """A library model whose file is gone (its Hugging Face cache was cleaned).

    The id is right, so this is not ModelNotFound; nothing failed in the server, and
    retrying will not help until someone fetches the file again, which the message says how.
    """

    code = "model_file_missing"

    def __init__(self, model: str, path: str, fetch_command: str) -> None:
        super().__init__(
            f"The model '{model}' is in the library but its file {path} is gone; "
            f"`{fetch_command}` fetches it again.",
            param="model",
        )


class NotFound(HearthError):
    """Something other than a model that the request names is not here."""

    code = "not_found"


class Overloaded(HearthError):
    """No room now; worth retrying after `retry_after` seconds."""

    code = "server_overloaded"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WorkerUnreachable(Overloaded):
    """An RPC worker holding the model's layers does not answer: the model cannot serve until
    it does (then it is loaded again), and the other models go on."""

    code = "rpc_worker_unreachable"


class Draining(Overloaded):
    """The server is shutting down: it finishes running requests and takes no new ones."""

    code = "server_shutting_down"


class DrainTimeout(HearthError):
    """The drain timeout ended a reply that was still running."""

    code = "server_shutting_down"


class EngineNotReady(HearthError):
    """The model is still loading."""

    code = "model_loading"


class ModelLoadFailed(HearthError):
    """A model of the library could not be loaded; the others go on serving."""

    code = "model_load_failed"

    def __init__(self, model: str, reason: str) -> None:
        super().__init__(f"The model '{model}' could not be loaded: {reason}", param="model")


class ChatTemplateBroken(HearthError):
    """The model's chat template ran past its time or size budget. The template, not the
    request, is at fault (any conversation would do it)."""

    code = "chat_template_failed"


class EngineFailure(HearthError):
    """llama.cpp failed while generating; the request cannot continue."""

    code = "engine_failure"


@singledispatch
def from_engine(error: engine.EngineError) -> HearthError:
    """The engine's own errors in the runtime's terms."""
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
def _(error: engine.WorkerUnreachable) -> HearthError:
    return WorkerUnreachable(error.message, retry_after=5)


@from_engine.register
def _(error: engine.NotStarted) -> HearthError:
    return EngineNotReady(error.message)


def as_hearth_error(error: Exception) -> HearthError | None:
    """A runtime or engine error in the runtime's terms; None for anything else."""
    if isinstance(error, engine.EngineError):
        return from_engine(error)
    return error if isinstance(error, HearthError) else None
