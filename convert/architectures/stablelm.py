"""StableLM (2 and 3B-4E1T, Zephyr): LayerNorm with biases, rope over part of each head."""

from __future__ import annotations

import gguf
from hearth.convert.architectures.base import (
    BLOCKS,
    CONTEXT,
    EMBEDDING,
    FEED_FORWARD,
    HEADS,
    HEADS_KV,
    Architecture,
    derived,
    hparam,
    register,
)
from hearth.convert.checkpoint import Checkpoint
from hearth.convert.errors import ConversionError

T = gguf.MODEL_TENSOR
K = gguf.Keys


@register
class StableLM(Architecture):
    """StableLM. The per-head Q/K LayerNorms of StableLM 2 12B are not supported here."""

    hf_names = ("StableLmForCausalLM", "StableLMEpochForCausalLM")
    gguf_arch = gguf.MODEL_ARCH.STABLELM
    hparams = (
        CONTEXT, EMBEDDING, BLOCKS, FEED_FORWARD, HEADS, HEADS_KV,
        derived(K.Rope.DIMENSION_COUNT, lambda a: int(
            float(a.rope_setting("partial_rotary_factor", 1.0)) * (a.hidden // a.n_head))),
        # Absent from a config it means parallel, as in the first StableLM releases.
        derived(K.LLM.USE_PARALLEL_RESIDUAL,
                lambda a: a.config.get("use_parallel_residual", True), bool),
        hparam(K.Attention.LAYERNORM_EPS, "layer_norm_eps", "norm_eps", kind=float),
    )
    bias_tensors = frozenset({T.ATTN_NORM, T.FFN_NORM})  # and Q/K/V with use_qkv_bias

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__(checkpoint)
        if self.config.get("qk_layernorm"):
            raise ConversionError("StableLM with qk_layernorm (StableLM 2 12B) is not supported")
