"""OLMo 2: norms after attention and MLP instead of before, and an RMS norm over all of Q and K."""

from __future__ import annotations

from typing import ClassVar

import gguf

from hearth.convert.architectures.base import BLOCK_SHAPES, Architecture, Shape, register

T = gguf.MODEL_TENSOR


@register
class Olmo2(Architecture):
    """OLMo 2 (1B-32B). Its Q/K norms span every head at once, not one head as in Qwen3."""

    hf_names = ("Olmo2ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.OLMO2
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        **{
            kind: shape
            for kind, shape in BLOCK_SHAPES.items()
            if kind not in (T.ATTN_NORM, T.FFN_NORM)
        },
        T.ATTN_Q_NORM: lambda a: (a.n_head * a.head_dim,),
        T.ATTN_K_NORM: lambda a: (a.n_head_kv * a.head_dim,),
        T.ATTN_POST_NORM: lambda a: (a.hidden,),
        T.FFN_POST_NORM: lambda a: (a.hidden,),
    }
