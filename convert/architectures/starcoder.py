"""StarCoder2: a GELU MLP without gate, LayerNorm and every projection with biases."""

from __future__ import annotations

from typing import ClassVar

import gguf

from hearth.convert.architectures.base import (
    BASE_HPARAMS,
    BLOCK_SHAPES,
    Architecture,
    HParam,
    Shape,
    register,
    without,
)

T = gguf.MODEL_TENSOR
K = gguf.Keys


@register
class Starcoder2(Architecture):
    """StarCoder2 (3B, 7B, 15B)."""

    hf_names = ("Starcoder2ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.STARCODER2
    hparams = (
        *without(BASE_HPARAMS, K.Attention.LAYERNORM_RMS_EPS),
        HParam(K.Attention.LAYERNORM_EPS, ("norm_epsilon", "layer_norm_eps"), float),
    )
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        kind: shape for kind, shape in BLOCK_SHAPES.items() if kind != T.FFN_GATE
    }

    @property
    def bias_tensors(self) -> frozenset[gguf.MODEL_TENSOR]:  # type: ignore[override]
        if not self.config.get("use_bias", True):
            return frozenset({T.ATTN_NORM, T.FFN_NORM})
        return frozenset(self.block_shapes)
