"""GPT-2: learned position embeddings, LayerNorm with biases, and Conv1D weights.

Hugging Face keeps GPT-2's projections as `Conv1D` modules, whose weights are stored (in, out),
the transpose of a Linear's; llama.cpp wants (out, in), so they are transposed on the way in.
"""

from __future__ import annotations

from typing import ClassVar

import gguf
import numpy as np

from hearth.convert.architectures.base import (
    Architecture,
    Shape,
    derived,
    hparam,
    register,
)
from hearth.convert.checkpoint import LazyTensor

T = gguf.MODEL_TENSOR
K = gguf.Keys
CONV1D_WEIGHTS = (".c_attn.weight", ".c_proj.weight", ".c_fc.weight")


def transposed(tensor: LazyTensor) -> LazyTensor:
    return LazyTensor(
        tuple(reversed(tensor.shape)), tensor.dtype, lambda: np.ascontiguousarray(tensor.load().T)
    )


@register
class GPT2(Architecture):
    """GPT-2 (124M to 1.5B) and its fine-tunes."""

    hf_names = ("GPT2LMHeadModel",)
    gguf_arch = gguf.MODEL_ARCH.GPT2
    size_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "hidden": ("n_embd", "hidden_size"),
        "n_head": ("n_head", "num_attention_heads"),
        "n_block": ("n_layer", "num_hidden_layers"),
        "vocab": ("vocab_size",),
    }
    hparams = (
        hparam(K.LLM.BLOCK_COUNT, "n_layer"),
        hparam(K.LLM.CONTEXT_LENGTH, "n_ctx", "n_positions"),
        hparam(K.LLM.EMBEDDING_LENGTH, "n_embd"),
        # llama.cpp's converter writes 4 x n_embd, as every released GPT-2 has.
        derived(K.LLM.FEED_FORWARD_LENGTH, lambda a: 4 * a.hidden),
        hparam(K.Attention.HEAD_COUNT, "n_head"),
        hparam(K.Attention.LAYERNORM_EPS, "layer_norm_epsilon", kind=float),
    )
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        T.ATTN_NORM: lambda a: (a.hidden,),
        T.ATTN_QKV: lambda a: (3 * a.hidden, a.hidden),
        T.ATTN_OUT: lambda a: (a.hidden, a.hidden),
        T.FFN_NORM: lambda a: (a.hidden,),
        T.FFN_UP: lambda a: (a.ffn, a.hidden),
        T.FFN_DOWN: lambda a: (a.hidden, a.ffn),
    }
    bias_tensors = frozenset(block_shapes)
    model_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        T.TOKEN_EMBD: lambda a: (a.vocab, a.hidden),
        T.POS_EMBD: lambda a: (a.require("n_positions", "n_ctx"), a.hidden),
        T.OUTPUT_NORM: lambda a: (a.hidden,),
        T.OUTPUT: lambda a: (a.vocab, a.hidden),
    }

    def feed_forward_size(self) -> int:
        return int(self.config.get("n_inner") or 4 * self.hidden)

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", True))

    def skip(self, name: str) -> bool:
        # The causal mask buffers older transformers saved with every block.
        return name.endswith((".attn.bias", ".attn.masked_bias")) or super().skip(name)

    def source_tensors(self) -> dict[str, LazyTensor]:
        return {
            name: transposed(t) if name.endswith(CONV1D_WEIGHTS) else t
            for name, t in self.checkpoint.tensors.items()
        }
