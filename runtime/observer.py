"""What a caller of the chat pipeline may learn about a generation as it runs.

The pipeline knows when a model was chosen, when the first text came and how many tokens a
choice took; the HTTP access log, the metrics and a benchmark want those figures. Rather
than the runtime reaching up into whoever called it, the caller hands an observer down with
the request, visible at the call site. Two updates per choice, nothing per token.
"""

from __future__ import annotations

from typing import Protocol


class GenerationObserver(Protocol):
    def model_chosen(self, model_id: str) -> None: ...

    def first_token(self) -> None: ...

    def finished(self, prompt_tokens: int, completion_tokens: int) -> None: ...


class NoObserver:
    """For callers that want to know nothing (`hearth chat`, tests)."""

    def model_chosen(self, model_id: str) -> None:
        pass

    def first_token(self) -> None:
        pass

    def finished(self, prompt_tokens: int, completion_tokens: int) -> None:
        pass


NO_OBSERVER: GenerationObserver = NoObserver()
