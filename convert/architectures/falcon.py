"""Falcon (7B, 40B, 180B): fused QKV stored per KV group, regrouped to Q, then K, then V.

Falcon's query_key_value holds, for each of its KV groups, that group's query heads followed by
one key and one value head. llama.cpp's falcon graph slices the fused tensor as all queries, all
keys, all values (the "jploski" layout the file declares), so rows are regrouped on the way in;
without it the model loads and every attention head reads the wrong rows.
"""

from __future__ import annotations

from typing import ClassVar

import gguf
import numpy as np

from hearth.convert.architectures.base import (
    BLOCKS,
    EMBEDDING,
    HEADS,
    Architecture,
    Shape,
    Transform,
    derived,
    hparam,
    register,
)
from hearth.convert.checkpoint import Checkpoint

T = gguf.MODEL_TENSOR
K = gguf.Keys


def regroup_qkv(n_head: int, n_head_kv: int, head_dim: int) -> Transform:
    def regroup(weight: np.ndarray) -> np.ndarray:
        cols = weight.shape[1:]
        groups = weight.reshape(n_head_kv, n_head // n_head_kv + 2, head_dim, *cols)
        q = groups[:, :-2].reshape(n_head * head_dim, *cols)
        k = groups[:, -2].reshape(n_head_kv * head_dim, *cols)
        v = groups[:, -1].reshape(n_head_kv * head_dim, *cols)
        return np.concatenate((q, k, v))

    return regroup


@register
class Falcon(Architecture):
    """Falcon. Multi-query 7B has one LayerNorm per block, 40B/180B two (ln_attn, ln_mlp)."""

    hf_names = ("FalconForCausalLM", "RWForCausalLM")
    gguf_arch = gguf.MODEL_ARCH.FALCON
    size_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "hidden": ("hidden_size",),
        "n_head": ("num_attention_heads", "n_head"),
        "n_block": ("num_hidden_layers", "n_layer"),
        "vocab": ("vocab_size",),
    }
    hparams = (
        # Falcon's configs name no context length; llama.cpp's converter writes 2048.
        derived(K.LLM.CONTEXT_LENGTH, lambda a: 2048),
        derived(K.LLM.TENSOR_DATA_LAYOUT, lambda a: "jploski", str),
        EMBEDDING,
        derived(K.LLM.FEED_FORWARD_LENGTH, lambda a: 4 * a.hidden),
        BLOCKS,
        HEADS,
        derived(K.Attention.HEAD_COUNT_KV, lambda a: a.n_head_kv),
        hparam(K.Attention.LAYERNORM_EPS, "layer_norm_epsilon", kind=float),
    )
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        T.ATTN_NORM: lambda a: (a.hidden,),
        T.ATTN_QKV: lambda a: ((a.n_head + 2 * a.n_head_kv) * a.head_dim, a.hidden),
        T.ATTN_OUT: lambda a: (a.hidden, a.hidden),
        T.FFN_UP: lambda a: (a.ffn, a.hidden),
        T.FFN_DOWN: lambda a: (a.hidden, a.ffn),
    }
    bias_tensors = frozenset({T.ATTN_NORM})

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__(checkpoint)
        # As llama.cpp's converter reads it: absent means multi-query, one KV head.
        self.n_head_kv = self.config.get("num_kv_heads") or self.config.get("n_head_kv") or 1

    def feed_forward_size(self) -> int:
        return int(self.config.get("ffn_hidden_size") or 4 * self.hidden)

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", True))

    def transform(self, kind: gguf.MODEL_TENSOR) -> Transform | None:
        if kind == T.ATTN_QKV:
            return regroup_qkv(self.n_head, self.n_head_kv, self.head_dim)
        return None
