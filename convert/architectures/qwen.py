"""Qwen2 / Qwen2.5 and Qwen3 (dense): NEOX rope, so no Q/K permutation."""

from __future__ import annotations

from typing import ClassVar

import gguf
from hearth.convert.architectures.base import (
    BASE_HPARAMS,
    BLOCK_SHAPES,
    QK_NORM_SHAPES,
    Architecture,
    Shape,
    register,
)

T = gguf.MODEL_TENSOR


@register
class Qwen2(Architecture):
    """Qwen2 / Qwen2.5: biases on Q, K and V."""

    hf_names = ("Qwen2ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN2
    bias_tensors = frozenset({T.ATTN_Q, T.ATTN_K, T.ATTN_V})
    hparams = BASE_HPARAMS


@register
class Qwen3(Architecture):
    """Qwen3: Qwen2 without the Q/K/V biases, with an RMS norm over each head's Q and K."""

    hf_names = ("Qwen3ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN3
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {**BLOCK_SHAPES, **QK_NORM_SHAPES}
