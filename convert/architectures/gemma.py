"""Gemma 1, 2 and 3 (text): norms stored as offsets from 1, GELU MLP, tied embeddings."""

from __future__ import annotations

from typing import Any, ClassVar

import gguf
import numpy as np

from hearth.convert.architectures.base import (
    BASE_HPARAMS,
    BLOCK_SHAPES,
    QK_NORM_SHAPES,
    SLIDING_WINDOW,
    Architecture,
    HParam,
    Shape,
    Transform,
    derived,
    register,
    rope_scaling_hook,
    without,
)
from hearth.convert.vocab import Vocabulary

T = gguf.MODEL_TENSOR
K = gguf.Keys


def add_one(weight: np.ndarray) -> np.ndarray:
    """Gemma's RMS norms scale by (1 + w); llama.cpp's scale by w, so the 1 goes into the data."""
    return weight + 1


GEMMA_HPARAMS = without(BASE_HPARAMS, K.Rope.FREQ_BASE)
GEMMA_NORMS = frozenset({T.ATTN_NORM, T.FFN_NORM, T.OUTPUT_NORM})
# gguf-py names Gemma 2's pre_feedforward_layernorm FFN_PRE_NORM (still "ffn_norm" in the file).
GEMMA2_NORMS = GEMMA_NORMS | {T.ATTN_POST_NORM, T.FFN_PRE_NORM, T.FFN_POST_NORM}
GEMMA3_NORMS = GEMMA2_NORMS | {T.ATTN_Q_NORM, T.ATTN_K_NORM}
# Gemma's end-of-turn id (<end_of_turn> in every Gemma tokenizer), which llama.cpp's converter
# writes for every Gemma. It also sets CodeGemma's fill-in-the-middle ids (67-70), but gguf-py
# has no key for them and drops them, so they are left out here.
GEMMA_SPECIAL_IDS = {"eot": 107}


@register
class Gemma(Architecture):
    """Gemma 1, CodeGemma."""

    hf_names = ("GemmaForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.GEMMA
    hparams = GEMMA_HPARAMS

    @property
    def tied_embeddings(self) -> bool:
        return True  # Gemma always reuses the embedding as output; an lm_head is a copy

    def transform(self, kind: gguf.MODEL_TENSOR) -> Transform | None:
        return add_one if kind in GEMMA_NORMS else None

    def adjust_vocabulary(self, vocab: Vocabulary) -> None:
        vocab.space_prefix = False
        vocab.fixed_special_ids = dict(GEMMA_SPECIAL_IDS)


@register
class Gemma2(Gemma):
    """Gemma 2: Gemma plus norms after attention and MLP, logit soft-capping, sliding window."""

    hf_names = ("Gemma2ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.GEMMA2
    hparams = (
        *GEMMA_HPARAMS,
        HParam(K.LLM.ATTN_LOGIT_SOFTCAPPING, ("attn_logit_softcapping",), float),
        HParam(K.LLM.FINAL_LOGIT_SOFTCAPPING, ("final_logit_softcapping",), float),
        HParam(K.Attention.SLIDING_WINDOW, ("sliding_window",), int),
    )
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        **BLOCK_SHAPES,
        T.ATTN_POST_NORM: lambda a: (a.hidden,),
        T.FFN_POST_NORM: lambda a: (a.hidden,),
    }

    def transform(self, kind: gguf.MODEL_TENSOR) -> Transform | None:
        return add_one if kind in GEMMA2_NORMS else None

    def adjust_vocabulary(self, vocab: Vocabulary) -> None:
        vocab.space_prefix = False  # and, unlike Gemma 1 in llama.cpp's converter, no eot id


def layer_rope(arch: Architecture, layer_type: str) -> dict[str, Any]:
    """Gemma 3's rope settings for one kind of layer (transformers 5 keeps one per kind)."""
    rope = arch.config.get("rope_parameters") or {}
    if layer_type in rope:
        return rope[layer_type]
    if layer_type == "sliding_attention":  # transformers 4 spelling
        base = arch.config.get("rope_local_base_freq")
        return {"rope_theta": base} if base is not None else {}
    return {
        "rope_theta": arch.config.get("rope_theta", 1_000_000.0),
        **(arch.config.get("rope_scaling") or {}),
    }


@register
class Gemma3(Gemma2):
    """Gemma 3 text (270M, 1B, and the text half of 4B-27B): Gemma 2's norms plus per-head Q/K
    norms, no attention soft-capping, a rope base for global layers and another for local."""

    hf_names = ("Gemma3ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.GEMMA3
    hparams = (
        *without(BASE_HPARAMS, K.Rope.FREQ_BASE),
        derived(
            K.Rope.FREQ_BASE,
            lambda a: layer_rope(a, "full_attention").get("rope_theta", 1_000_000.0),
            float,
        ),
        derived(
            K.Rope.FREQ_BASE_SWA,
            lambda a: layer_rope(a, "sliding_attention").get("rope_theta"),
            float,
        ),
        HParam(K.LLM.FINAL_LOGIT_SOFTCAPPING, ("final_logit_softcapping",), float, required=False),
        SLIDING_WINDOW,
    )
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        **Gemma2.block_shapes,
        **QK_NORM_SHAPES,
    }

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", True))

    def write_rope_scaling(self, writer: gguf.GGUFWriter) -> None:
        rope_scaling_hook(self, writer, layer_rope(self, "full_attention"))

    def transform(self, kind: gguf.MODEL_TENSOR) -> Transform | None:
        return add_one if kind in GEMMA3_NORMS else None
