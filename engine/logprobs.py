"""Log probabilities of generated tokens, read from the logits row they were sampled from.

They are the model's own distribution (a log-softmax of the raw logits), as OpenAI reports
them, not the distribution after temperature, top-k or a grammar reshaped it: a client
comparing alternatives wants to know what the model thought. Computed only for requests
that ask (a log-softmax and a partial sort over the vocabulary, about 0.2 ms a token for
a 49k vocabulary), so other requests pay nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import llama_cpp
import numpy as np

from hearth.engine.base import TokenLogprob
from hearth.engine.logits import LogitsRows


class LogprobReader:
    def __init__(self, n_vocab: int, piece: Callable[[int], bytes]) -> None:
        self.row = LogitsRows(n_vocab)
        self._piece = piece

    def read(
        self, ctx: llama_cpp.llama_context_p, output_index: int, token: int, top: int
    ) -> TokenLogprob:
        logprobs = log_softmax(self.row(ctx, output_index))
        return TokenLogprob(
            piece=self._piece(token),
            logprob=float(logprobs[token]),
            top=tuple((self._piece(t), float(logprobs[t])) for t in top_tokens(logprobs, top)),
        )


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(logits.max())
    return shifted - np.log(np.exp(shifted).sum())


def top_tokens(logprobs: np.ndarray, k: int) -> list[int]:
    """The k likeliest token ids, likeliest first (ties: the lower id first)."""
    if k <= 0:
        return []
    k = min(k, len(logprobs))
    candidates = np.argpartition(-logprobs, k - 1)[:k]
    return sorted(candidates.tolist(), key=lambda t: (-logprobs[t], t))
