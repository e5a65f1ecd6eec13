"""Gemma 1, 2 and 3 (text): norms stored as offsets from 1, GELU MLP, tied embeddings."""

from __future__ import annotations

from typing import ClassVar

import gguf
import numpy as np
from hearth.convert.architectures.base import (
    BASE_HPARAMS,
    BLOCK_SHAPES,
    Architecture,
    HParam,
    Shape,
    Transform,
    register,
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
    hparams = (*GEMMA_HPARAMS,
               HParam(K.LLM.ATTN_LOGIT_SOFTCAPPING, ("attn_logit_softcapping",), float),
               HParam(K.LLM.FINAL_LOGIT_SOFTCAPPING, ("final_logit_softcapping",), float),
               HParam(K.Attention.SLIDING_WINDOW, ("sliding_window",), int))
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        **BLOCK_SHAPES, T.ATTN_POST_NORM: lambda a: (a.hidden,),
        T.FFN_POST_NORM: lambda a: (a.hidden,)}

    def transform(self, kind: gguf.MODEL_TENSOR) -> Transform | None:
        return add_one if kind in GEMMA2_NORMS else None

    def adjust_vocabulary(self, vocab: Vocabulary) -> None:
        vocab.space_prefix = False  # and, unlike Gemma 1 in llama.cpp's converter, no eot id
