"""A SentencePiece vocabulary kept only as tokenizer.json: what transformers 5 saves for LLaMA.

transformers 5 writes a LLaMA or Mistral tokenizer as `tokenizer.json` (a BPE model with byte
fallback, converted from the SentencePiece original) and no `tokenizer.model`. Read as byte-level
BPE ("gpt2") it silently tokenizes almost every text differently, so it is written back as
llama.cpp's SentencePiece model ("llama"), as llama.cpp's converter does.

llama.cpp's SentencePiece tokenizer merges, at each step, the adjacent pair whose joined piece
has the highest score. The JSON keeps no scores, only the merge list in priority order, so each
piece scores minus the rank of the first merge that makes it. llama.cpp's converter writes
-1000 for every piece instead; with all scores equal llama.cpp merges left to right, which
splits some words differently from the original, so this is a deliberate difference.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import gguf

from hearth.convert.errors import ConversionError

BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")
METASPACE = "\u2581"


def is_sentencepiece_json(tokenizer: dict[str, Any]) -> bool:
    """A BPE with byte fallback is a converted SentencePiece model; byte-level BPE has none."""
    model = tokenizer.get("model") or {}
    return model.get("type") == "BPE" and bool(model.get("byte_fallback"))


def _merge_pairs(merges: list[Any]) -> list[tuple[str, str]]:
    # tokenizers wrote merges as "left right" strings before 0.20 and as [left, right] since.
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else (m[0], m[1]) for m in merges]


def piece_scores(vocab: dict[str, int], merges: list[Any]) -> list[float]:
    """Scores in id order that make llama.cpp merge pieces in the JSON's merge order."""
    size = max(vocab.values()) + 1 if vocab else 0
    unmerged = -float(len(merges))  # pieces no merge makes are never the result of a merge
    scores = [unmerged] * size
    seen: set[int] = set()
    for rank, (left, right) in enumerate(_merge_pairs(merges)):
        token_id = vocab.get(left + right)
        if token_id is not None and token_id not in seen:
            seen.add(token_id)
            scores[token_id] = -float(rank)
    return scores


def adds_space_prefix(tokenizer: dict[str, Any]) -> bool:
    """Whether text gets a leading "▁", by a Prepend normalizer or a Metaspace pre-tokenizer."""

    def steps(part: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
        if not part:
            return []
        return part.get(key, [part]) if part.get("type") == "Sequence" else [part]

    for step in steps(tokenizer.get("normalizer"), "normalizers"):
        if step.get("type") == "Prepend" and step.get("prepend") == METASPACE:
            return True
    for step in steps(tokenizer.get("pre_tokenizer"), "pretokenizers"):
        if step.get("type") == "Metaspace":
            return step.get("prepend_scheme", "always") != "never"
    return False


def sentencepiece_json_pieces(
    folder: Path, tokenizer: dict[str, Any]
) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and GGUF token types of the JSON's base vocabulary, in id order."""
    model = tokenizer["model"]
    vocab: dict[str, int] = model.get("vocab") or {}
    if not isinstance(vocab, dict) or not vocab:
        raise ConversionError(f"{folder / 'tokenizer.json'} has no BPE vocabulary")
    by_id = {token_id: piece for piece, token_id in vocab.items()}
    size = max(by_id) + 1
    scores = piece_scores(vocab, model.get("merges") or [])
    tokens, types = [], []
    for token_id in range(size):
        piece = by_id.get(token_id)
        if piece is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        tokens.append(piece)
        if piece == model.get("unk_token"):
            types.append(gguf.TokenType.UNKNOWN)
        elif BYTE_PIECE.fullmatch(piece):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    return tokens, scores, types
