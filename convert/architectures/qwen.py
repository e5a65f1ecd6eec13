"""Qwen2 / Qwen2.5, Qwen3, and their mixtures of experts: NEOX rope, so no Q/K permutation."""

from __future__ import annotations

import logging
from typing import ClassVar

import gguf

from hearth.convert.architectures.base import (
    ATTENTION_SHAPES,
    BASE_HPARAMS,
    BLOCK_SHAPES,
    EXPERT_SHAPES,
    QK_NORM_SHAPES,
    Architecture,
    Experts,
    HParam,
    Shape,
    register,
)
from hearth.convert.checkpoint import Checkpoint

logger = logging.getLogger(__name__)
T = gguf.MODEL_TENSOR
K = gguf.Keys


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


MOE_HPARAMS = (
    *BASE_HPARAMS,
    HParam(K.LLM.EXPERT_COUNT, ("num_experts", "num_local_experts"), int),
    HParam(K.LLM.EXPERT_USED_COUNT, ("num_experts_per_tok",), int),
    HParam(K.LLM.EXPERT_FEED_FORWARD_LENGTH, ("moe_intermediate_size",), int, required=False),
    HParam(
        K.LLM.EXPERT_SHARED_FEED_FORWARD_LENGTH,
        ("shared_expert_intermediate_size",),
        int,
        required=False,
    ),
)
SHARED_EXPERT_SHAPES: dict[gguf.MODEL_TENSOR, Shape] = {
    T.FFN_GATE_INP_SHEXP: lambda a: (1, a.hidden),
    T.FFN_GATE_SHEXP: lambda a: (a.shared_ffn, a.hidden),
    T.FFN_UP_SHEXP: lambda a: (a.shared_ffn, a.hidden),
    T.FFN_DOWN_SHEXP: lambda a: (a.hidden, a.shared_ffn),
}


@register
class Qwen2Moe(Experts, Qwen2):
    """Qwen1.5-MoE / Qwen2-MoE: routed experts plus one gated shared expert in every layer."""

    hf_names = ("Qwen2MoeForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN2MOE
    hparams = MOE_HPARAMS
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        **ATTENTION_SHAPES,
        **EXPERT_SHAPES,
        **SHARED_EXPERT_SHAPES,
    }

    @property
    def shared_ffn(self) -> int:
        return int(self.require("shared_expert_intermediate_size"))


@register
class Qwen3Moe(Qwen2Moe):
    """Qwen3-MoE (30B-A3B, 235B-A22B): Qwen3's attention, routed experts, no shared expert."""

    hf_names = ("Qwen3MoeForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN3MOE
    bias_tensors = frozenset()
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        **ATTENTION_SHAPES,
        **QK_NORM_SHAPES,
        **EXPERT_SHAPES,
    }

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__(checkpoint)
        if not self.config.get("norm_topk_prob", False):
            # No GGUF key says it: llama.cpp's qwen3moe always renormalizes the chosen experts'
            # weights, as every released Qwen3-MoE does (norm_topk_prob true).
            logger.warning(
                "%s: norm_topk_prob is false, but llama.cpp renormalizes the top-k "
                "expert weights of every Qwen3-MoE; its outputs will differ from "
                "transformers'",
                checkpoint.folder,
            )
