"""/tokenize and /detokenize in llama.cpp's server's shape."""

from __future__ import annotations

from pydantic import BaseModel, Field

from hearth.server.openai.protocol import RequestBody

# Not part of OpenAI's API: llama.cpp's server offers these, and tools that count tokens or
# build prompts by hand (llama.cpp's own web UI, some agent frameworks) call them.


class TokenizeRequest(RequestBody):
    model: str | None = Field(default=None, description="Default: the default model.")
    content: str
    add_special: bool = Field(default=False, description="Add BOS (and whatever else).")
    parse_special: bool = Field(
        default=True, description="Let text such as <|im_start|> become its control token."
    )
    with_pieces: bool = Field(default=False, description="Return each token's text too.")


class TokenPiece(BaseModel):
    id: int
    piece: str


class TokenizeResponse(BaseModel):
    tokens: list[int] | list[TokenPiece]


class DetokenizeRequest(RequestBody):
    model: str | None = None
    tokens: list[int] = Field(max_length=1_000_000)


class DetokenizeResponse(BaseModel):
    content: str


class TemplateToken(BaseModel):
    id: int
    piece: str  # its text; a control token's own text (`<|im_start|>`)
    special: bool  # a control token, not text


class ApplyTemplateResponse(BaseModel):
    """llama.cpp's server answers `prompt`; Hearth adds the tokens, control tokens marked."""

    prompt: str
    tokens: list[TemplateToken]
