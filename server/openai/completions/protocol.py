"""The text completions endpoint's wire format (OpenAI's legacy completions)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    field_validator,
    model_validator,
)

from hearth.runtime.requests import TextRequest
from hearth.server.openai.protocol import (
    MAX_TOP_LOGPROBS,
    Choices,
    FinishReason,
    SamplingFields,
    Usage,
    unix_now,
)


def _completion_id() -> str:
    return f"cmpl-{uuid.uuid4().hex}"


class CompletionRequest(SamplingFields):
    model: str
    prompt: str | list[str]
    echo: bool | None = False
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    max_tokens: int | None = Field(default=16, ge=1)
    n: Choices = 1
    suffix: str | None = None

    @field_validator("prompt")
    @classmethod
    def _single_prompt(cls, prompt: str | list[str]) -> str | list[str]:
        if isinstance(prompt, list) and len(prompt) != 1:
            raise ValueError("exactly one prompt is supported")
        return prompt

    @model_validator(mode="after")
    def _unsupported(self) -> CompletionRequest:
        if self.logprobs is not None and self.echo:
            # The prompt's own logprobs would need logits for every prompt token.
            raise ValueError("logprobs with echo is not supported")
        if self.suffix:
            raise ValueError("suffix (insertion) is not supported")
        return self

    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_runtime(self) -> TextRequest:
        """The request in the runtime's terms (runtime/requests.py)."""
        return TextRequest(
            prompt=self.prompt_text(),
            max_tokens=self.max_tokens,
            sampling=self.sampling(),
            stop=self.stop_sequences(),
            n=self.n or 1,
            logprobs=self.logprobs,
            grammar=self.grammar,
        )


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists, one entry per generated token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]] | None
    text_offset: list[int]


class CompletionChoice(BaseModel):
    text: str
    index: int = 0
    logprobs: CompletionLogprobs | None = None
    finish_reason: FinishReason | None = None


class Completion(BaseModel):
    id: str = Field(default_factory=_completion_id)
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=unix_now)
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None
