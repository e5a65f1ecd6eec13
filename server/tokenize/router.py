"""POST /tokenize, /detokenize and /apply-template (llama.cpp server shapes), any model."""

from __future__ import annotations

from fastapi import APIRouter

from hearth.engine.base import Prompt
from hearth.runtime.pipeline import rendered_prompt
from hearth.server.openai.chat.protocol import ChatCompletionRequest
from hearth.server.state import Registry
from hearth.server.tokenize.protocol import (
    ApplyTemplateResponse,
    DetokenizeRequest,
    DetokenizeResponse,
    TemplateToken,
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


@router.post("/apply-template")
async def apply_template(body: ChatCompletionRequest, registry: Registry) -> ApplyTemplateResponse:
    """A chat request's prompt as the model sees it (llama.cpp's server has this route)."""
    async with registry.acquire(body.model) as handle:
        prompt = await rendered_prompt(handle, body.to_runtime())
        engine = handle.engine
        tokens = []
        for token in engine.tokenize(prompt):
            control = engine.control_text(token)
            piece = control if control is not None else engine.token_piece(token)
            tokens.append(TemplateToken(id=token, piece=piece, special=control is not None))
    return ApplyTemplateResponse(prompt=prompt.text, tokens=tokens)
