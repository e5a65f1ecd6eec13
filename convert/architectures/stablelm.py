"""StableLM (2 and 3B-4E1T, Zephyr): LayerNorm with biases, rope over part of each head."""

from __future__ import annotations

import re

import gguf

from hearth.convert.architectures.base import (
    BLOCK_SHAPES,
    BLOCKS,
    CONTEXT,
    EMBEDDING,
    FEED_FORWARD,
    HEADS,
    HEADS_KV,
    Architecture,
    Shape,
    derived,
    hparam,
    register,
    stacked_numbered,
)
from hearth.convert.checkpoint import LazyTensor

T = gguf.MODEL_TENSOR
K = gguf.Keys

HEAD_NORM = re.compile(r"(?P<prefix>.+\.[qk]_layernorm)\.norms\.(?P<index>\d+)\.(?P<rest>weight)")


@register
class StableLM(Architecture):
    """StableLM. StableLM 2 12B adds a LayerNorm per head over Q and K (`qk_layernorm`)."""

    hf_names = ("StableLmForCausalLM", "StableLMEpochForCausalLM")
    gguf_arch = gguf.MODEL_ARCH.STABLELM
    hparams = (
        CONTEXT,
        EMBEDDING,
        BLOCKS,
        FEED_FORWARD,
        HEADS,
        HEADS_KV,
        derived(
            K.Rope.DIMENSION_COUNT,
            lambda a: int(
                float(a.rope_setting("partial_rotary_factor", 1.0)) * (a.hidden // a.n_head)
            ),
        ),
        # Absent from a config it means parallel, as in the first StableLM releases.
        derived(K.LLM.USE_PARALLEL_RESIDUAL, lambda a: a.parallel_residual, bool),
        hparam(K.Attention.LAYERNORM_EPS, "layer_norm_eps", "norm_eps", kind=float),
    )

    @property
    def parallel_residual(self) -> bool:
        return bool(self.config.get("use_parallel_residual", True))

    @property
    def block_shapes(self) -> dict[gguf.MODEL_TENSOR, Shape]:  # type: ignore[override]
        shapes = dict(BLOCK_SHAPES)
        if self.parallel_residual:
            # Attention and MLP both read the input LayerNorm's output: there is no second norm.
            del shapes[T.FFN_NORM]
        if self.config.get("qk_layernorm"):
            shapes[T.ATTN_Q_NORM] = lambda a: (a.n_head, a.head_dim)
            shapes[T.ATTN_K_NORM] = lambda a: (a.n_head_kv, a.head_dim)
        return shapes

    @property
    def bias_tensors(self) -> frozenset[gguf.MODEL_TENSOR]:  # type: ignore[override]
        # and Q/K/V with use_qkv_bias; the per-head Q/K norms have no bias.
        return frozenset({T.ATTN_NORM, T.FFN_NORM}) & set(self.block_shapes)

    def source_tensors(self) -> dict[str, LazyTensor]:
        return stacked_head_norms(super().source_tensors())


def stacked_head_norms(tensors: dict[str, LazyTensor]) -> dict[str, LazyTensor]:
    """StableLM 2 12B's per-head Q/K LayerNorms as one (heads, head_dim) tensor per layer.

    Transformers keeps one LayerNorm module per head (`...q_layernorm.norms.3.weight`);
    llama.cpp reads `attn_q_norm` / `attn_k_norm` with a row per head, as its converter stacks
    them. Each stack is read lazily, when written.
    """
    return stacked_numbered(tensors, HEAD_NORM, "head norms")
