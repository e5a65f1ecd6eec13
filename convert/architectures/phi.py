"""Phi-3 and Phi-4: fused QKV and gate/up projections, kept fused as llama.cpp's `phi3` reads them.

llama.cpp's phi3 graph takes `attn_qkv` and an `ffn_up` twice the feed-forward width (gate and
up halves, split at run time), which is how the checkpoint stores them, so nothing is split.
Long-context models (128k, Phi-4-mini) carry LongRoPE factors: two tensors and an attention
factor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar

import gguf
import numpy as np

from hearth.convert.architectures.base import (
    BLOCKS,
    CONTEXT,
    EMBEDDING,
    FEED_FORWARD,
    HEADS,
    HEADS_KV,
    RMS_EPS,
    Architecture,
    Shape,
    derived,
    register,
)
from hearth.convert.errors import ConversionError
from hearth.convert.vocab import Vocabulary

T = gguf.MODEL_TENSOR
K = gguf.Keys
# llama.cpp's converter scores Phi-3's padding rows (32064 rows, 32011 tokens) -10000.
PAD_SCORE = -10000.0


def rope_dims(arch: Architecture) -> int:
    return int(float(arch.rope_setting("partial_rotary_factor", 1.0)) * arch.hidden) // arch.n_head


@register
class Phi3(Architecture):
    """Phi-3 (mini, small, medium; 4k and 128k) and Phi-4 (dense)."""

    hf_names = ("Phi3ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.PHI3
    hparams = (
        CONTEXT,
        EMBEDDING,
        BLOCKS,
        FEED_FORWARD,
        HEADS,
        HEADS_KV,
        RMS_EPS,
        derived(
            K.Rope.SCALING_ORIG_CTX_LEN,
            lambda a: a.rope_setting("original_max_position_embeddings"),
        ),
        derived(K.Rope.DIMENSION_COUNT, rope_dims),
        derived(K.Rope.FREQ_BASE, lambda a: a.rope_setting("rope_theta"), float),
        # 0 tells llama.cpp "no sliding window" (Phi-4); Phi-3 mini has 2047 or 262143.
        derived(K.Attention.SLIDING_WINDOW, lambda a: a.config.get("sliding_window") or 0),
    )
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        T.ATTN_NORM: lambda a: (a.hidden,),
        T.ATTN_QKV: lambda a: ((a.n_head + 2 * a.n_head_kv) * a.head_dim, a.hidden),
        T.ATTN_OUT: lambda a: (a.hidden, a.n_head * a.head_dim),
        T.FFN_NORM: lambda a: (a.hidden,),
        T.FFN_UP: lambda a: (2 * a.ffn, a.hidden),
        T.FFN_DOWN: lambda a: (a.hidden, a.ffn),
    }

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        if self.rope_setting("original_max_position_embeddings") is None:
            raise ConversionError(
                f"{self.checkpoint.folder}: config lacks 'original_max_position_embeddings'"
            )
        super().write_hparams(writer)

    def write_rope_scaling(self, writer: gguf.GGUFWriter) -> None:
        if not self.rope_setting("long_factor"):
            return
        scale = self.require("max_position_embeddings") / self.rope_setting(
            "original_max_position_embeddings"
        )
        kind = str(self.rope_setting("rope_type") or self.rope_setting("type") or "").lower()
        if kind in ("su", "longrope"):
            old_ctx = self.rope_setting("original_max_position_embeddings")
            factor = math.sqrt(1 + math.log(scale) / math.log(old_ctx)) if scale > 1 else 1.0
        elif kind == "yarn":
            factor = 0.1 * math.log(scale) + 1.0 if scale > 1 else 1.0
        else:
            raise ConversionError(f"unsupported Phi-3 rope scaling type {kind!r}")
        writer.add_rope_scaling_attn_factors(factor)

    def extra_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        long, short = self.rope_setting("long_factor"), self.rope_setting("short_factor")
        if not long:
            return
        if not short or len(long) != len(short) or len(long) * 2 != rope_dims(self):
            raise ConversionError(
                f"{self.checkpoint.folder}: LongRoPE factors need "
                f"{rope_dims(self) // 2} long and short values each"
            )
        yield gguf.TENSOR_NAMES[T.ROPE_FACTORS_LONG] + ".weight", np.array(long, np.float32)
        yield gguf.TENSOR_NAMES[T.ROPE_FACTORS_SHORT] + ".weight", np.array(short, np.float32)

    def adjust_vocabulary(self, vocab: Vocabulary) -> None:
        for i, token in enumerate(vocab.tokens):
            if vocab.types[i] == gguf.TokenType.UNUSED and token == f"[PAD{i}]":
                vocab.scores[i] = PAD_SCORE
