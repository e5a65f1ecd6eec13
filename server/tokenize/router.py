"""POST /tokenize and /detokenize, in llama.cpp's server's shape, for any model."""

from __future__ import annotations

from fastapi import APIRouter

from hearth.engine.base import Prompt
from hearth.server.state import Registry
from hearth.server.tokenize.protocol import (
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
    TokenPiece,
)

router = APIRouter()


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, registry: Registry) -> TokenizeResponse:
    async with registry.acquire(body.model or registry.default_id) as handle:
        engine = handle.engine
        tokens = engine.tokenize(Prompt(body.content, body.add_special, body.parse_special))
        if not body.with_pieces:
            return TokenizeResponse(tokens=tokens)
        return TokenizeResponse(
            tokens=[TokenPiece(id=token, piece=engine.token_piece(token)) for token in tokens]
        )


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, registry: Registry) -> DetokenizeResponse:
    async with registry.acquire(body.model or registry.default_id) as handle:
        return DetokenizeResponse(content=handle.engine.detokenize(body.tokens))
