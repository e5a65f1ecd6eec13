"""Engine log probabilities in OpenAI's two wire shapes: chat's per-token objects and the
legacy completions API's parallel lists."""

from __future__ import annotations

from collections.abc import Sequence

from hearth.engine.base import TokenLogprob
from hearth.server.openai.completions.protocol import CompletionLogprobs
from hearth.server.openai.protocol import ChoiceLogprobs, TokenLogprobOut, TopLogprob


def _text(piece: bytes) -> str:
    # A token may end inside a character; its `bytes` carry the exact value.
    return piece.decode("utf-8", errors="replace")


def chat_logprobs(tokens: Sequence[TokenLogprob]) -> ChoiceLogprobs:
    return ChoiceLogprobs(
        content=[
            TokenLogprobOut(
                token=_text(t.piece),
                logprob=t.logprob,
                bytes=list(t.piece),
                top_logprobs=[
                    TopLogprob(token=_text(piece), logprob=logprob, bytes=list(piece))
                    for piece, logprob in t.top
                ],
            )
            for t in tokens
        ]
    )


def completion_logprobs(
    tokens: Sequence[TokenLogprob], top: int, start: int = 0
) -> CompletionLogprobs:
    """`start`: the character offset of the first token in the choice's text."""
    offsets, seen = [], b""
    for token in tokens:
        offsets.append(start + len(seen.decode("utf-8", errors="ignore")))
        seen += token.piece
    return CompletionLogprobs(
        tokens=[_text(t.piece) for t in tokens],
        token_logprobs=[t.logprob for t in tokens],
        # One dict per token; several alternatives that print alike keep the likeliest.
        top_logprobs=[_top_dict(t) for t in tokens] if top > 0 else None,
        text_offset=offsets,
    )


def _top_dict(token: TokenLogprob) -> dict[str, float]:
    top: dict[str, float] = {}
    for piece, logprob in token.top:
        top.setdefault(_text(piece), logprob)
    return top
