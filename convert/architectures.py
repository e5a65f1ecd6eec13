"""Architectures the converter knows: a registry of small classes over gguf-py's tables.

Checkpoint tensor names map to GGUF names through gguf-py's own `TensorNameMap` (it knows both
the Hugging Face and the Meta `.pth` spellings), hyperparameters through a table of `gguf.Keys`.
An architecture class only says what differs: its Hugging Face class names, its GGUF
architecture, and a hook or two (Llama permutes Q/K, Qwen2 carries attention biases). Adding an
architecture is one more class with `@register`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import gguf
import numpy as np
from hearth.convert.checkpoint import Checkpoint
from hearth.convert.errors import ConversionError
from hearth.convert.vocab import Vocabulary

T = gguf.MODEL_TENSOR


@dataclass(frozen=True)
class HParam:
    """One GGUF key filled from the first config name present (or a derived value)."""

    key: str  # a gguf.Keys template such as "{arch}.context_length"
    config_names: tuple[str, ...]
    kind: type
    required: bool = True


BASE_HPARAMS: tuple[HParam, ...] = (
    HParam(gguf.Keys.LLM.CONTEXT_LENGTH, ("max_position_embeddings", "n_ctx"), int),
    HParam(gguf.Keys.LLM.EMBEDDING_LENGTH, ("hidden_size",), int),
    HParam(gguf.Keys.LLM.BLOCK_COUNT, ("num_hidden_layers",), int),
    HParam(gguf.Keys.LLM.FEED_FORWARD_LENGTH, ("intermediate_size",), int),
    HParam(gguf.Keys.Attention.HEAD_COUNT, ("num_attention_heads",), int),
    HParam(gguf.Keys.Attention.HEAD_COUNT_KV, ("num_key_value_heads", "num_attention_heads"), int),
    HParam(gguf.Keys.Attention.LAYERNORM_RMS_EPS, ("rms_norm_eps",), float),
    HParam(gguf.Keys.Rope.FREQ_BASE, ("rope_theta",), float, required=False),
    HParam(gguf.Keys.LLM.VOCAB_SIZE, ("vocab_size",), int),
)

# Tensors every block must have, and the shape each has in terms of the config.
Shape = Callable[["Architecture"], tuple[int, ...]]
BLOCK_SHAPES: dict[gguf.MODEL_TENSOR, Shape] = {
    T.ATTN_NORM: lambda a: (a.hidden,),
    T.ATTN_Q: lambda a: (a.n_head * a.head_dim, a.hidden),
    T.ATTN_K: lambda a: (a.n_head_kv * a.head_dim, a.hidden),
    T.ATTN_V: lambda a: (a.n_head_kv * a.head_dim, a.hidden),
    T.ATTN_OUT: lambda a: (a.hidden, a.n_head * a.head_dim),
    T.FFN_NORM: lambda a: (a.hidden,),
    T.FFN_GATE: lambda a: (a.ffn, a.hidden),
    T.FFN_UP: lambda a: (a.ffn, a.hidden),
    T.FFN_DOWN: lambda a: (a.hidden, a.ffn),
}
MODEL_SHAPES: dict[gguf.MODEL_TENSOR, Shape] = {
    T.TOKEN_EMBD: lambda a: (a.vocab, a.hidden),
    T.OUTPUT_NORM: lambda a: (a.hidden,),
    T.OUTPUT: lambda a: (a.vocab, a.hidden),
}

# Checkpoint entries that are derived at load time and carry no weights.
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq", "rope.freqs", ".attention.masked_bias")


@dataclass(frozen=True)
class MappedTensor:
    """A checkpoint tensor placed in the GGUF: its new name, kind and a data transform."""

    source_name: str
    name: str
    kind: gguf.MODEL_TENSOR
    shape: tuple[int, ...]
    transform: Callable[[np.ndarray], np.ndarray] | None


class Architecture:
    """The Llama-shaped decoder all supported architectures share; subclasses change hooks."""

    hf_names: ClassVar[tuple[str, ...]] = ()
    gguf_arch: ClassVar[gguf.MODEL_ARCH] = gguf.MODEL_ARCH.LLAMA
    hparams: ClassVar[tuple[HParam, ...]] = BASE_HPARAMS
    bias_tensors: ClassVar[frozenset[gguf.MODEL_TENSOR]] = frozenset()
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = BLOCK_SHAPES
    # llama.cpp's converter writes these for its Llama family only; llama.cpp derives the
    # rope dimension from the head size and the vocabulary size from the token list.
    writes_rope_dimension_count: ClassVar[bool] = True

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.hidden = self.require("hidden_size")
        self.n_head = self.require("num_attention_heads")
        self.n_head_kv = self.config.get("num_key_value_heads") or self.n_head
        self.head_dim = self.config.get("head_dim") or self.hidden // self.n_head
        self.ffn = self.require("intermediate_size")
        self.vocab = self.require("vocab_size")
        self.n_block = self.require("num_hidden_layers")
        self.name_map = gguf.get_tensor_name_map(self.gguf_arch, self.n_block)

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    def require(self, key: str) -> Any:
        if key not in self.config or self.config[key] is None:
            raise ConversionError(f"{self.checkpoint.folder}: config lacks {key!r}")
        return self.config[key]

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        for hparam in self.hparams:
            name = next((n for n in hparam.config_names if self.config.get(n) is not None), None)
            if name is None:
                if hparam.required:
                    raise ConversionError(
                        f"{self.checkpoint.folder}: config lacks {hparam.config_names[0]!r}"
                    )
                continue
            key = hparam.key.format(arch=self.arch_name)
            value = hparam.kind(self.config[name])
            if hparam.kind is float:
                writer.add_float32(key, value)
            else:
                writer.add_uint32(key, value)
        if self.writes_rope_dimension_count:
            writer.add_rope_dimension_count(self.head_dim)
        if self.config.get("head_dim") is not None:
            writer.add_key_length(self.head_dim)
            writer.add_value_length(self.head_dim)
        rope_scaling_hook(self, writer)

    def expected_shapes(self) -> dict[gguf.MODEL_TENSOR, tuple[int, ...]]:
        return {kind: shape(self) for kind, shape in {**self.block_shapes, **MODEL_SHAPES}.items()}

    def transform(self, kind: gguf.MODEL_TENSOR) -> Callable[[np.ndarray], np.ndarray] | None:
        """A hook: how a tensor's data changes on its way into the GGUF (None: unchanged)."""
        return None

    def adjust_vocabulary(self, vocab: Vocabulary) -> None:
        """A hook: tokenizer settings the architecture implies beyond the tokenizer files."""

    def skip(self, name: str) -> bool:
        if name.endswith(SKIPPED_SUFFIXES):
            return True
        # A tied lm_head (torch.save keeps it; safetensors drops it) duplicates the embedding.
        return self.tied_embeddings and name in ("lm_head.weight", "output.weight")

    def required_tensors(self) -> Iterator[str]:
        yield gguf.TENSOR_NAMES[T.TOKEN_EMBD] + ".weight"
        yield gguf.TENSOR_NAMES[T.OUTPUT_NORM] + ".weight"
        for bid in range(self.n_block):
            for kind in self.block_shapes:
                yield gguf.TENSOR_NAMES[kind].format(bid=bid) + ".weight"
            for kind in self.bias_tensors:
                yield gguf.TENSOR_NAMES[kind].format(bid=bid) + ".bias"

    def extra_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Tensors computed from the config rather than read (Llama 3.1's rope factors)."""
        yield from rope_factor_tensors(self)


def permute_for_llama_rope(n_head: int) -> Callable[[np.ndarray], np.ndarray]:
    """Hugging Face half-split rope rows -> llama.cpp's interleaved (Meta) order.

    Hugging Face's conversion of Meta's weights permuted each head's Q/K rows so that its
    `rotate_half` rope could pair row i with row i + d/2. llama.cpp's LLAMA rope pairs rows
    2i and 2i+1 as Meta's original code did, so HF Q/K rows must be permuted back. Without it
    the model loads and runs but every attention score is wrong and it produces garbage; Meta
    `.pth` weights were never permuted and must not be.
    """

    def permute(weight: np.ndarray) -> np.ndarray:
        rows = weight.shape[0]
        head_pairs = weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:])
        return head_pairs.swapaxes(1, 2).reshape(weight.shape)

    return permute


ARCHITECTURES: dict[str, type[Architecture]] = {}


def register(cls: type[Architecture]) -> type[Architecture]:
    for name in cls.hf_names:
        ARCHITECTURES[name] = cls
    return cls


def architecture_for(checkpoint: Checkpoint) -> Architecture:
    name = checkpoint.architecture
    cls = ARCHITECTURES.get(name)
    if cls is None:
        supported = ", ".join(sorted(ARCHITECTURES))
        raise ConversionError(f"unsupported architecture {name}; supported: {supported}")
    return cls(checkpoint)


@register
class Llama(Architecture):
    """LLaMA 1/2/3, Vicuna, Alpaca, TinyLlama, SmolLM/SmolLM2: the reference decoder."""

    hf_names = ("LlamaForCausalLM", "LLaMAForCausalLM")
    gguf_arch = gguf.MODEL_ARCH.LLAMA

    def transform(self, kind: gguf.MODEL_TENSOR) -> Callable[[np.ndarray], np.ndarray] | None:
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
class Qwen2(Architecture):
    """Qwen2 / Qwen2.5: biases on Q, K and V, and NEOX rope, so no permutation."""

    hf_names = ("Qwen2ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN2
    bias_tensors = frozenset({T.ATTN_Q, T.ATTN_K, T.ATTN_V})
    hparams = tuple(h for h in BASE_HPARAMS if h.key != gguf.Keys.LLM.VOCAB_SIZE)
    writes_rope_dimension_count = False


@register
class Qwen3(Architecture):
    """Qwen3: Qwen2 without the Q/K/V biases, with an RMS norm over each head's Q and K."""

    hf_names = ("Qwen3ForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.QWEN3
    hparams = tuple(h for h in BASE_HPARAMS if h.key != gguf.Keys.LLM.VOCAB_SIZE)
    writes_rope_dimension_count = False
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        **BLOCK_SHAPES, T.ATTN_Q_NORM: lambda a: (a.head_dim,),
        T.ATTN_K_NORM: lambda a: (a.head_dim,)}


def add_one(weight: np.ndarray) -> np.ndarray:
    """Gemma's RMS norms scale by (1 + w); llama.cpp's scale by w, so the 1 goes into the data."""
    return weight + 1


GEMMA_HPARAMS = tuple(h for h in BASE_HPARAMS
                      if h.key not in (gguf.Keys.LLM.VOCAB_SIZE, gguf.Keys.Rope.FREQ_BASE))
GEMMA_NORMS = frozenset({T.ATTN_NORM, T.FFN_NORM, T.OUTPUT_NORM})
# gguf-py names Gemma 2's pre_feedforward_layernorm FFN_PRE_NORM (still "ffn_norm" in the file).
GEMMA2_NORMS = GEMMA_NORMS | {T.ATTN_POST_NORM, T.FFN_PRE_NORM, T.FFN_POST_NORM}
# Gemma's end-of-turn id (<end_of_turn> in every Gemma tokenizer), which llama.cpp's converter
# writes for every Gemma. It also sets CodeGemma's fill-in-the-middle ids (67-70), but gguf-py
# has no key for them and drops them, so they are left out here.
GEMMA_SPECIAL_IDS = {"eot": 107}


@register
class Gemma(Architecture):
    """Gemma 1: norms stored as offsets from 1, GELU MLP, tied embeddings, no space prefix."""

    hf_names = ("GemmaForCausalLM",)
    gguf_arch = gguf.MODEL_ARCH.GEMMA
    hparams = GEMMA_HPARAMS
    writes_rope_dimension_count = False

    @property
    def tied_embeddings(self) -> bool:
        return True  # Gemma always reuses the embedding as output; an lm_head is a copy

    def transform(self, kind: gguf.MODEL_TENSOR) -> Callable[[np.ndarray], np.ndarray] | None:
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
               HParam(gguf.Keys.LLM.ATTN_LOGIT_SOFTCAPPING, ("attn_logit_softcapping",), float),
               HParam(gguf.Keys.LLM.FINAL_LOGIT_SOFTCAPPING, ("final_logit_softcapping",), float),
               HParam(gguf.Keys.Attention.SLIDING_WINDOW, ("sliding_window",), int))
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {
        **BLOCK_SHAPES, T.ATTN_POST_NORM: lambda a: (a.hidden,),
        T.FFN_POST_NORM: lambda a: (a.hidden,)}

    def transform(self, kind: gguf.MODEL_TENSOR) -> Callable[[np.ndarray], np.ndarray] | None:
        return add_one if kind in GEMMA2_NORMS else None

    def adjust_vocabulary(self, vocab: Vocabulary) -> None:
        vocab.space_prefix = False  # and, unlike Gemma 1 in llama.cpp's converter, no eot id


def rope_scaling_hook(arch: Architecture, writer: gguf.GGUFWriter) -> None:
    scaling = arch.config.get("rope_scaling") or {}
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind in (None, "default", "llama3"):  # llama3 is carried by the rope_freqs tensor
        return
    scaling_types: dict[str, gguf.RopeScalingType] = {
        "linear": gguf.RopeScalingType.LINEAR, "yarn": gguf.RopeScalingType.YARN,
    }
    if kind not in scaling_types:
        raise ConversionError(f"unsupported rope_scaling type {kind!r}; supported: linear, yarn, llama3")
    writer.add_rope_scaling_type(scaling_types[kind])
    writer.add_rope_scaling_factor(float(scaling["factor"]))
    if kind == "yarn" and "original_max_position_embeddings" in scaling:
        writer.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))


def rope_factor_tensors(arch: Architecture) -> Iterator[tuple[str, np.ndarray]]:
    """Llama 3.1's frequency-dependent rope scaling, which llama.cpp reads as `rope_freqs`."""
    scaling = arch.config.get("rope_scaling") or {}
    if (scaling.get("rope_type") or scaling.get("type")) != "llama3":
        return
    base = float(arch.config.get("rope_theta", 10000.0))
    factor = float(scaling.get("factor", 8.0))
    low, high = float(scaling.get("low_freq_factor", 1.0)), float(scaling.get("high_freq_factor", 4.0))
    old_ctx = float(scaling.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / base ** (np.arange(0, arch.head_dim, 2, dtype=np.float32) / arch.head_dim)
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old_ctx / high:
            factors.append(1.0)
        elif wavelen > old_ctx / low:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    yield gguf.TENSOR_NAMES[T.ROPE_FREQS] + ".weight", np.array(factors, dtype=np.float32)
