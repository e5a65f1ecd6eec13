"""A llama_batch whose arrays are numpy buffers we own.

Filling llama.cpp's own batch through ctypes costs a Python attribute write per field per
token, and each token's seq_id is a separately allocated array. Pointing the struct at
numpy arrays instead makes a 512-token prompt chunk a few slice assignments, and the
per-token sequence pointers are wired once, at construction.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence

import llama_cpp
import numpy as np


class TokenBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.tokens = np.zeros(capacity, dtype=np.int32)
        self.positions = np.zeros(capacity, dtype=np.int32)
        self.n_seq_ids = np.ones(capacity, dtype=np.int32)
        self.seq_ids = np.zeros(capacity, dtype=np.int32)
        self.wants_logits = np.zeros(capacity, dtype=np.int8)
        int32_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq_ids.ctypes.data
        self._seq_id_ptrs = (int32_p * capacity)(
            *(ctypes.cast(base + 4 * i, int32_p) for i in range(capacity))
        )
        self.struct = llama_cpp.llama_batch()
        self.struct.token = self.tokens.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token))
        self.struct.embd = None
        self.struct.pos = self.positions.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_pos))
        self.struct.n_seq_id = self.n_seq_ids.ctypes.data_as(int32_p)
        self.struct.seq_id = ctypes.cast(self._seq_id_ptrs, ctypes.POINTER(int32_p))
        self.struct.logits = self.wants_logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.size = 0

    @property
    def room(self) -> int:
        return self.capacity - self.size

    def clear(self) -> None:
        self.size = 0

    def add(
        self,
        tokens: Sequence[int],
        first_pos: int,
        seq_id: int,
        logits_last: bool,
        logits_all: bool = False,
    ) -> int:
        """Append tokens of one sequence; returns the batch index of the last one.

        Logits are computed for the last token (logits_last), or for every one of them
        (logits_all: a speculated run, whose every row may be sampled)."""
        start, count = self.size, len(tokens)
        end = start + count
        self.tokens[start:end] = tokens
        self.positions[start:end] = np.arange(first_pos, first_pos + count, dtype=np.int32)
        self.seq_ids[start:end] = seq_id
        self.wants_logits[start:end] = 1 if logits_all else 0
        if logits_last:
            self.wants_logits[end - 1] = 1
        self.size = end
        return end - 1

    def decode(self, ctx: llama_cpp.llama_context_p) -> int:
        self.struct.n_tokens = self.size
        return llama_cpp.llama_decode(ctx, self.struct)
