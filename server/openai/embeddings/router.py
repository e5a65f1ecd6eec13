"""POST /v1/embeddings: for any model of the library, chat models included."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter

from hearth.engine.base import Prompt
from hearth.server.openai.embeddings.protocol import (
    Embedding,
    EmbeddingList,
    EmbeddingRequest,
    EmbeddingUsage,
)
from hearth.server.state import Registry

router = APIRouter()


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingRequest, registry: Registry) -> EmbeddingList:
    inputs = [Prompt(item) if isinstance(item, str) else item for item in body.inputs()]
    async with registry.acquire(body.model) as handle:
        vectors, tokens = await handle.engine.embed(inputs)
        model = handle.id
    return EmbeddingList(
        data=[
            Embedding(embedding=_encoded(vector, body.encoding_format), index=index)
            for index, vector in enumerate(vectors)
        ],
        model=model,
        usage=EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens),
    )


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    # base64 is little-endian float32, as OpenAI's clients decode it.
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector
