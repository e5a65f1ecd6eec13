"""What the engine itself can refuse or fail with.

These say what went wrong in the engine's own terms. The HTTP layer maps each to an OpenAI
error through `hearth.runtime.errors.from_engine`, and `hearth chat` to a line for the user; the
engine knows nothing of status codes.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class: a message a user can read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ContextExceeded(EngineError):
    """The prompt, or the prompt plus max_tokens, does not fit one request's context."""

    def __init__(self, *, limit: int, prompt_tokens: int, max_tokens: int | None = None) -> None:
        super().__init__(f"{prompt_tokens} prompt tokens do not fit a context of {limit}")
        self.limit = limit
        self.prompt_tokens = prompt_tokens
        self.max_tokens = max_tokens


class QueueFull(EngineError):
    """Every slot is busy and the wait queue is full; worth retrying after `retry_after` s."""

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class NotStarted(EngineError):
    """The engine's model is not loaded (yet, or any more)."""


class GenerationFailed(EngineError):
    """llama.cpp failed while generating; the request cannot continue."""


class ModelLoadError(EngineError):
    """The GGUF is missing, corrupt or does not fit. The message is one line for a user."""


class InvalidTokens(EngineError):
    """Token ids outside the model's vocabulary."""


class GrammarRefused(EngineError):
    """A JSON schema llama.cpp's converter cannot compile, or a grammar its parser refuses."""


class WorkerUnreachable(EngineError):
    """An RPC worker a model's layers live on cannot be reached (or its connection broke)."""

    def __init__(self, endpoint: str, reason: str) -> None:
        super().__init__(f"RPC worker {endpoint} is unreachable: {reason}")
        self.endpoint = endpoint
        self.reason = reason
