"""A logits row of a llama.cpp context as a numpy array, read in place (no copy).

The sampler's greedy and grammar paths and the logprob reader all read rows. Each row is
n_vocab floats, and the pointer type that views them is built once per vocabulary size,
not once per token.
"""

from __future__ import annotations

import ctypes

import llama_cpp
import numpy as np


class LogitsRows:
    def __init__(self, n_vocab: int) -> None:
        self._row_type = ctypes.POINTER(ctypes.c_float * n_vocab)

    def __call__(self, ctx: llama_cpp.llama_context_p, output_index: int) -> np.ndarray:
        """Output `output_index`'s logits; valid until the context decodes again."""
        logits = llama_cpp.llama_get_logits_ith(ctx, output_index)
        return np.frombuffer(ctypes.cast(logits, self._row_type).contents, dtype=np.float32)
