"""The model list's wire format (OpenAI's, with Hearth's fields fenced off)."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, Field

from hearth.runtime.registry import ModelListing


def unix_now() -> int:
    return int(time.time())


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=unix_now)
    owned_by: str = "hearth"
    # ---- Hearth extensions: what this id serves --------------------------------------
    prompt: str | None = Field(default=None, description="The chat format this id applies.")
    context_length: int | None = None
    loaded: bool | None = Field(default=None, description="Whether the model is resident.")
    state: Literal["unloaded", "loading", "loaded", "failed", "missing"] | None = None
    # ---- end of Hearth extensions ------------------------------------------------------

    @classmethod
    def of(cls, listing: ModelListing) -> ModelCard:
        return cls(
            id=listing.id,
            prompt=listing.prompt,
            context_length=listing.context_length,
            loaded=listing.loaded,
            state=listing.state,
        )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]
