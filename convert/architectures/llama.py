"""The Llama family: LLaMA 1/2/3, Mistral, Mixtral, SmolLM3."""

from __future__ import annotations

import gguf

from hearth.convert.architectures.base import (
    BASE_HPARAMS,
    Architecture,
    Experts,
    HParam,
    Transform,
    hparam,
    register,
)

T = gguf.MODEL_TENSOR
LLAMA_HPARAMS = (*BASE_HPARAMS, hparam(gguf.Keys.LLM.VOCAB_SIZE, "vocab_size"))


def permute_for_llama_rope(n_head: int) -> Transform:
    """Hugging Face half-split rope rows -> llama.cpp's interleaved (Meta) order.

    Hugging Face's conversion of Meta's weights permuted each head's Q/K rows so that its
    `rotate_half` rope could pair row i with row i + d/2. llama.cpp's LLAMA rope pairs rows
    2i and 2i+1 as Meta's original code did, so HF Q/K rows must be permuted back. Without it
    the model loads and runs but every attention score is wrong and it produces garbage; Meta
    `.pth` weights were never permuted and must not be.
    """

    def permute(weight):
        rows = weight.shape[0]
        head_pairs = weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        return head_pairs.swapaxes(1, 2).reshape(weight.shape)

    return permute


@register
class Llama(Architecture):
    """LLaMA 1/2/3, Vicuna, Alpaca, TinyLlama, SmolLM/SmolLM2: the reference decoder."""

    hf_names = ("LlamaForCausalLM", "LLaMAForCausalLM")
    gguf_arch = gguf.MODEL_ARCH.LLAMA
    hparams = LLAMA_HPARAMS
    writes_rope_dimension_count = True

    def transform(self, kind: gguf.MODEL_TENSOR) -> Transform | None:
        if not self.checkpoint.hf_rope_layout:
            return None
        if kind == T.ATTN_Q:
            return permute_for_llama_rope(self.n_head)
        if kind == T.ATTN_K:
            return permute_for_llama_rope(self.n_head_kv)
        return None


@register
class Mistral(Llama):
    """Mistral 7B is a Llama with grouped-query attention; llama.cpp runs it as `llama`."""

    hf_names = ("MistralForCausalLM",)


@register
class SmolLM3(Llama):
    """SmolLM3: a Llama whose every fourth layer has no rope (NoPE). llama.cpp's smollm3 knows
    that interval itself, so nothing beyond the Llama keys is written, as its converter does."""

    hf_names = ("SmolLM3ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.SMOLLM3


@register
class Mixtral(Experts, Llama):
    """Mixtral 8x7B / 8x22B: Mistral's attention with eight experts (w1 gate, w2 down, w3 up)
    in every layer; llama.cpp runs it as `llama` with expert tensors."""

    hf_names = ("MixtralForCausalLM",)
    hparams = (
        *LLAMA_HPARAMS,
        HParam(gguf.Keys.LLM.EXPERT_COUNT, ("num_local_experts",), int),
        HParam(gguf.Keys.LLM.EXPERT_USED_COUNT, ("num_experts_per_tok",), int),
    )
