"""What every architecture shares: the decoder model, hyperparameters, the registry, rope hooks.

Checkpoint tensor names map to GGUF names through gguf-py's own `TensorNameMap` (it knows both
the Hugging Face and the Meta `.pth` spellings), hyperparameters through a table of `gguf.Keys`.
An architecture class only says what differs from the Llama-shaped decoder here: its Hugging
Face class names, its GGUF architecture, its keys, and a hook or two. The family modules beside
this one hold the classes; each registers itself with `@register`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import gguf
import numpy as np

from hearth.convert.checkpoint import Checkpoint, LazyTensor
from hearth.convert.errors import ConversionError
from hearth.convert.vocab import Vocabulary

T = gguf.MODEL_TENSOR
K = gguf.Keys


@dataclass(frozen=True)
class HParam:
    """One GGUF key, filled from the first config name present, or derived from the model.

    `derive` (when given) computes the value from the architecture; returning None leaves the
    key out. `kind` is the GGUF value type: int (uint32), float (float32), bool or str.
    """

    key: str  # a gguf.Keys template such as "{arch}.context_length"
    config_names: tuple[str, ...]
    kind: type
    required: bool = True
    derive: Callable[[Architecture], Any] | None = None


def hparam(key: str, *names: str, kind: type = int, required: bool = True) -> HParam:
    return HParam(key, names, kind, required)


def derived(key: str, derive: Callable[[Architecture], Any], kind: type = int) -> HParam:
    return HParam(key, (), kind, required=False, derive=derive)


CONTEXT = hparam(K.LLM.CONTEXT_LENGTH, "max_position_embeddings", "n_ctx")
EMBEDDING = hparam(K.LLM.EMBEDDING_LENGTH, "hidden_size")
BLOCKS = hparam(K.LLM.BLOCK_COUNT, "num_hidden_layers")
FEED_FORWARD = hparam(K.LLM.FEED_FORWARD_LENGTH, "intermediate_size")
HEADS = hparam(K.Attention.HEAD_COUNT, "num_attention_heads")
HEADS_KV = hparam(K.Attention.HEAD_COUNT_KV, "num_key_value_heads", "num_attention_heads")
RMS_EPS = hparam(K.Attention.LAYERNORM_RMS_EPS, "rms_norm_eps", kind=float)
NORM_EPS = hparam(K.Attention.LAYERNORM_EPS, "layer_norm_eps", "layer_norm_epsilon", kind=float)
ROPE_BASE = hparam(K.Rope.FREQ_BASE, "rope_theta", kind=float, required=False)
SLIDING_WINDOW = hparam(K.Attention.SLIDING_WINDOW, "sliding_window", required=False)

# What llama.cpp's converter writes for any decoder that does not override it.
BASE_HPARAMS: tuple[HParam, ...] = (
    CONTEXT,
    EMBEDDING,
    BLOCKS,
    FEED_FORWARD,
    HEADS,
    HEADS_KV,
    RMS_EPS,
    ROPE_BASE,
)


def without(hparams: tuple[HParam, ...], *keys: str) -> tuple[HParam, ...]:
    return tuple(h for h in hparams if h.key not in keys)


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
QK_NORM_SHAPES: dict[gguf.MODEL_TENSOR, Shape] = {
    T.ATTN_Q_NORM: lambda a: (a.head_dim,),
    T.ATTN_K_NORM: lambda a: (a.head_dim,),
}

# Mixtures of experts: attention as above, a router and stacked experts instead of one MLP.
ATTENTION_SHAPES = {
    kind: shape
    for kind, shape in BLOCK_SHAPES.items()
    if kind not in (T.FFN_GATE, T.FFN_UP, T.FFN_DOWN)
}
EXPERT_SHAPES: dict[gguf.MODEL_TENSOR, Shape] = {
    T.FFN_GATE_INP: lambda a: (a.n_expert, a.hidden),
    T.FFN_GATE_EXP: lambda a: (a.n_expert, a.expert_ffn, a.hidden),
    T.FFN_UP_EXP: lambda a: (a.n_expert, a.expert_ffn, a.hidden),
    T.FFN_DOWN_EXP: lambda a: (a.n_expert, a.hidden, a.expert_ffn),
}

# Checkpoint entries that are derived at load time and carry no weights.
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq", "rope.freqs", ".attention.masked_bias")

Transform = Callable[[np.ndarray], np.ndarray]


class Architecture:
    """The Llama-shaped decoder all supported architectures share; subclasses change hooks."""

    hf_names: ClassVar[tuple[str, ...]] = ()
    gguf_arch: ClassVar[gguf.MODEL_ARCH] = gguf.MODEL_ARCH.LLAMA
    hparams: ClassVar[tuple[HParam, ...]] = BASE_HPARAMS
    bias_tensors: ClassVar[frozenset[gguf.MODEL_TENSOR]] = frozenset()
    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = BLOCK_SHAPES
    model_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = MODEL_SHAPES
    # llama.cpp's converter writes these for its Llama family only; llama.cpp derives the
    # rope dimension from the head size and the vocabulary size from the token list.
    writes_rope_dimension_count: ClassVar[bool] = False
    # Config names of the sizes, first present wins (GPT-2 and Falcon spell them their way).
    size_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "hidden": ("hidden_size",),
        "n_head": ("num_attention_heads",),
        "n_block": ("num_hidden_layers",),
        "vocab": ("vocab_size",),
    }

    def __init__(self, checkpoint: Checkpoint) -> None:
        self.checkpoint = checkpoint
        self.config = checkpoint.config
        self.hidden = self.require(*self.size_names["hidden"])
        self.n_head = self.require(*self.size_names["n_head"])
        self.n_head_kv = self.config.get("num_key_value_heads") or self.n_head
        self.head_dim = self.config.get("head_dim") or self.hidden // self.n_head
        self.ffn = self.feed_forward_size()
        self.vocab = self.require(*self.size_names["vocab"])
        self.n_block = self.require(*self.size_names["n_block"])
        self.name_map = gguf.get_tensor_name_map(self.gguf_arch, self.n_block)

    @property
    def arch_name(self) -> str:
        return gguf.MODEL_ARCH_NAMES[self.gguf_arch]

    def require(self, *keys: str) -> Any:
        for key in keys:
            if self.config.get(key) is not None:
                return self.config[key]
        raise ConversionError(f"{self.checkpoint.folder}: config lacks {keys[0]!r}")

    def feed_forward_size(self) -> int:
        return int(self.require("intermediate_size"))

    @property
    def tied_embeddings(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def write_hparams(self, writer: gguf.GGUFWriter) -> None:
        for hparam in self.hparams:
            value = self._hparam_value(hparam)
            if value is None:
                continue
            key = hparam.key.format(arch=self.arch_name)
            if hparam.kind is float:
                writer.add_float32(key, float(value))
            elif hparam.kind is bool:
                writer.add_bool(key, bool(value))
            elif hparam.kind is str:
                writer.add_string(key, str(value))
            else:
                writer.add_uint32(key, int(value))
        if self.writes_rope_dimension_count:
            writer.add_rope_dimension_count(self.head_dim)
        if self.config.get("head_dim") is not None:
            writer.add_key_length(self.head_dim)
            writer.add_value_length(self.head_dim)
        self.write_rope_scaling(writer)

    def write_rope_scaling(self, writer: gguf.GGUFWriter) -> None:
        """A hook: the rope scaling keys (linear and YaRN here; Phi-3 has its own)."""
        rope_scaling_hook(self, writer)

    def rope_setting(self, name: str, default: Any = None) -> Any:
        """A rope setting from the config's top level or its rope_scaling / rope_parameters."""
        for place in (
            self.config,
            self.config.get("rope_scaling") or {},
            self.config.get("rope_parameters") or {},
        ):
            if place.get(name) is not None:
                return place[name]
        return default

    def _hparam_value(self, hparam: HParam) -> Any:
        if hparam.derive is not None:
            return hparam.derive(self)
        name = next((n for n in hparam.config_names if self.config.get(n) is not None), None)
        if name is None:
            if hparam.required:
                raise ConversionError(
                    f"{self.checkpoint.folder}: config lacks {hparam.config_names[0]!r}"
                )
            return None
        return self.config[name]

    def expected_shapes(self) -> dict[gguf.MODEL_TENSOR, tuple[int, ...]]:
        shapes = {**self.block_shapes, **self.model_shapes}
        return {kind: shape(self) for kind, shape in shapes.items()}

    def source_tensors(self) -> dict[str, LazyTensor]:
        """A hook: the checkpoint's tensors as the name map should see them (experts stacked,
        GPT-2's Conv1D weights transposed); by default the checkpoint's own."""
        return self.checkpoint.tensors

    def transform(self, kind: gguf.MODEL_TENSOR) -> Transform | None:
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
        for kind in self.model_shapes:
            if kind != T.OUTPUT:  # absent when tied to the embedding
                yield gguf.TENSOR_NAMES[kind] + ".weight"
        for bid in range(self.n_block):
            for kind in self.block_shapes:
                yield gguf.TENSOR_NAMES[kind].format(bid=bid) + ".weight"
            for kind in self.bias_tensors:
                yield gguf.TENSOR_NAMES[kind].format(bid=bid) + ".bias"

    def extra_tensors(self) -> Iterator[tuple[str, np.ndarray]]:
        """Tensors computed from the config rather than read (Llama 3.1's rope factors)."""
        yield from rope_factor_tensors(self)


class Experts(Architecture):
    """A mixin for mixtures of experts: their sizes, and experts stacked per layer."""

    block_shapes: ClassVar[dict[gguf.MODEL_TENSOR, Shape]] = {**ATTENTION_SHAPES, **EXPERT_SHAPES}

    @property
    def n_expert(self) -> int:
        return int(self.require("num_experts", "num_local_experts"))

    @property
    def expert_ffn(self) -> int:
        return int(self.config.get("moe_intermediate_size") or self.ffn)

    def source_tensors(self) -> dict[str, LazyTensor]:
        return stacked_experts(super().source_tensors())


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


EXPERT = re.compile(r"(?P<prefix>.+\.experts)\.(?P<index>\d+)\.(?P<rest>[^.]+\.weight)")


def stacked_experts(tensors: dict[str, LazyTensor]) -> dict[str, LazyTensor]:
    """One (n_expert, rows, cols) tensor per layer and projection, for llama.cpp's MoE graphs.

    Hub MoE checkpoints keep each expert's projection as its own tensor (`...experts.3.w1.weight`);
    llama.cpp wants them stacked (`...experts.w1.weight`, its name map knows that spelling). Each
    stack is a lazy tensor that reads its experts only when written, so at most one layer's
    experts of one projection are in memory, never all experts of the model.
    """
    return stacked_numbered(tensors, EXPERT, "experts")


def stacked_numbered(
    tensors: dict[str, LazyTensor], pattern: re.Pattern[str], what: str
) -> dict[str, LazyTensor]:
    """Tensors numbered 0..n-1 (`pattern` groups prefix, index, rest) as one lazy stack
    named `prefix.rest`, in the place of the first; every other tensor as it is."""
    groups: dict[str, dict[int, LazyTensor]] = {}
    stacked: dict[str, LazyTensor] = {}
    for name, tensor in tensors.items():
        match = pattern.fullmatch(name)
        if match is None:
            stacked[name] = tensor
            continue
        merged = f"{match['prefix']}.{match['rest']}"
        groups.setdefault(merged, {})[int(match["index"])] = tensor
        stacked.setdefault(merged, tensor)  # keeps the checkpoint's order; replaced below
    for merged, numbered in groups.items():
        parts = [numbered[i] for i in sorted(numbered)]
        if sorted(numbered) != list(range(len(parts))) or len({p.shape for p in parts}) != 1:
            raise ConversionError(
                f"{merged}: {what} {sorted(numbered)} are not 0..n-1 of one shape"
            )
        stacked[merged] = LazyTensor(
            (len(parts), *parts[0].shape),
            parts[0].dtype,
            lambda parts=parts: np.stack([p.load() for p in parts]),
        )
    return stacked


def rope_scaling_hook(
    arch: Architecture, writer: gguf.GGUFWriter, scaling: dict[str, Any] | None = None
) -> None:
    """Linear and YaRN rope scaling keys, from `scaling` or the config's rope_scaling."""
    scaling = (arch.config.get("rope_scaling") or {}) if scaling is None else scaling
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind in (None, "default", "llama3"):  # llama3 is carried by the rope_freqs tensor
        return
    scaling_types: dict[str, gguf.RopeScalingType] = {
        "linear": gguf.RopeScalingType.LINEAR,
        "yarn": gguf.RopeScalingType.YARN,
    }
    if kind not in scaling_types:
        raise ConversionError(
            f"unsupported rope_scaling type {kind!r}; supported: linear, yarn, llama3"
        )
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
    low, high = (
        float(scaling.get("low_freq_factor", 1.0)),
        float(scaling.get("high_freq_factor", 4.0)),
    )
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
