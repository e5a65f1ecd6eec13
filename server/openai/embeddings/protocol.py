"""The embeddings endpoint's wire format (OpenAI's)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, field_validator

from hearth.server.openai.protocol import RequestBody


class EmbeddingRequest(RequestBody):
    input: str | list[str] | list[int] | list[list[int]]
    model: str
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(
        cls, value: str | list[str] | list[int] | list[list[int]]
    ) -> str | list[str] | list[int] | list[list[int]]:
        if isinstance(value, list) and (not value or any(item in ("", []) for item in value)):
            raise ValueError("input must not be empty, nor contain an empty item")
        if isinstance(value, list) and len(value) > MAX_EMBEDDING_INPUTS:
            raise ValueError(f"at most {MAX_EMBEDDING_INPUTS} inputs per request")
        if value == "":
            raise ValueError("input must not be empty")
        return value

    @field_validator("dimensions")
    @classmethod
    def _no_dimensions(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError(
                "dimensions is not supported: a model's embeddings have the size it was "
                "trained with"
            )
        return value

    def inputs(self) -> list[str | list[int]]:
        """Texts or token lists, one item per embedding asked for."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(item, int) for item in self.input):
            return [list(self.input)]  # type: ignore[arg-type]
        return list(self.input)  # type: ignore[arg-type]


MAX_EMBEDDING_INPUTS = 2048


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | str
    index: int


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
