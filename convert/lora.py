"""PEFT LoRA adapter folder -> GGUF LoRA adapter, as llama.cpp loads it.

A PEFT folder (`adapter_config.json` + `adapter_model.safetensors`, or `adapter_model.bin` read
with `torch.load(weights_only=True)`) holds, for each adapted linear layer W, a pair A (rank x
in) and B (out x rank); the adapted layer is W + alpha / rank * B @ A. The GGUF keeps each pair
as `<base GGUF name>.lora_a` / `.lora_b` (A as it is, B as it is) and alpha as
`adapter.lora.alpha`; llama.cpp adds the product to the base model's matching tensor at run
time, so the names must be the base's GGUF names, looked up through the base architecture's
own table.

The base architecture's transforms apply too. Llama's Q/K rows are permuted from Hugging Face's
half-split rope order to llama.cpp's interleaved one; the base GGUF's attn_q holds the permuted
rows, so the adapter's update must be permuted the same way. A row permutation P of B @ A is
(P B) @ A: B gets the transform and A stays, which holds for any transform that only reorders
rows (the Q/K permutation is the only one a linear layer gets among the architectures so far;
norms, which mergekit puts in adapters as full tensors, get theirs whole).

The base model's config (its architecture, heads, layers) comes from `--base FOLDER`, else
from `base_model_name_or_path` in adapter_config.json: a folder, or a Hub repository whose
config.json alone is fetched. No base weights are read.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from hearth.convert.architectures import Architecture, architecture_for
from hearth.convert.checkpoint import (
    HF_FORMATS,
    Checkpoint,
    LazyTensor,
    hf_config,
    open_torch_file,
    read_json,
)
from hearth.convert.errors import ConversionError
from hearth.convert.quantize import ADAPTER_OUT_TYPES, OutType
from hearth.convert.writer import PlannedTensor, staged_output, write_gguf

logger = logging.getLogger(__name__)
Q = gguf.GGMLQuantizationType
T = gguf.MODEL_TENSOR

ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."
# PEFT's spellings of a pair: linear layers, and embeddings (lora_embedding_*, no ".weight").
PAIR_SUFFIXES = {
    ".lora_A.weight": "a",
    ".lora_B.weight": "b",
    ".lora_embedding_A": "a",
    ".lora_embedding_B": "b",
}


def is_adapter_folder(folder: Path) -> bool:
    return (folder / ADAPTER_CONFIG).is_file()


@dataclass(frozen=True)
class ConvertedAdapter:
    path: Path
    architecture: str
    tensors: int
    out_type: str
    alpha: float


def _adapter_tensors(folder: Path) -> dict[str, LazyTensor]:
    safetensors = folder / "adapter_model.safetensors"
    if safetensors.is_file():
        return HF_FORMATS[0].opener(safetensors)
    if (folder / "adapter_model.bin").is_file():
        return open_torch_file(folder / "adapter_model.bin")  # weights_only=True
    raise ConversionError(
        f"{folder} has {ADAPTER_CONFIG} but no adapter_model.safetensors or adapter_model.bin"
    )


def lora_alpha(config: dict[str, Any], folder: Path) -> float:
    """The alpha llama.cpp scales by (alpha / rank), refusing what it cannot express."""
    if config.get("peft_type", "LORA") != "LORA":
        raise ConversionError(
            f"{folder}: a {config['peft_type']} adapter is not LoRA; "
            "llama.cpp applies LoRA adapters only"
        )
    if config.get("use_dora"):
        raise ConversionError(
            f"{folder}: DoRA adapters rescale the base weights, which "
            "llama.cpp's LoRA adapters cannot express"
        )
    if config.get("alpha_pattern"):
        raise ConversionError(
            f"{folder}: alpha_pattern gives modules alphas of their own; a "
            "GGUF adapter has one alpha"
        )
    alpha = float(config["lora_alpha"]) if "lora_alpha" in config else None
    if alpha is None:
        raise ConversionError(f"{folder}/{ADAPTER_CONFIG} lacks 'lora_alpha'")
    if config.get("use_rslora"):
        # rsLoRA scales by alpha / sqrt(rank); llama.cpp always by alpha / rank, so the alpha
        # written is alpha * sqrt(rank). (llama.cpp's converter ignores use_rslora, and its
        # adapter then acts sqrt(rank) times too weakly.)
        if config.get("rank_pattern"):
            raise ConversionError(f"{folder}: rsLoRA with a rank_pattern has no single alpha")
        alpha *= math.sqrt(float(config["r"]))
    return alpha


def base_folder(adapter: Path, config: dict[str, Any], base: Path | None) -> Path:
    """Where the base model's config.json is: --base, else base_model_name_or_path."""
    if base is not None:
        if not (base / "config.json").is_file():
            raise ConversionError(f"--base {base} has no config.json")
        return base
    named = config.get("base_model_name_or_path")
    if not named:
        raise ConversionError(
            f"{adapter}/{ADAPTER_CONFIG} names no base model; pass --base "
            "FOLDER (the base model's folder, for its config.json)"
        )
    local = Path(named).expanduser()
    if (local / "config.json").is_file():
        return local
    from hearth.convert.hub import fetch_base_config, is_repo_id

    if is_repo_id(named):
        return fetch_base_config(named)
    raise ConversionError(
        f"the base model {named!r} of {adapter} is neither a folder with a "
        "config.json nor a repository id; pass --base FOLDER"
    )


def _pairs(
    tensors: dict[str, LazyTensor], folder: Path
) -> tuple[dict[str, dict[str, LazyTensor]], dict[str, LazyTensor]]:
    """LoRA pairs by base tensor name, and full tensors (mergekit's norms) by name."""
    pairs: dict[str, dict[str, LazyTensor]] = {}
    whole: dict[str, LazyTensor] = {}
    for name, tensor in sorted(tensors.items()):
        plain = name.removeprefix(PEFT_PREFIX)
        suffix = next((s for s in PAIR_SUFFIXES if plain.endswith(s)), None)
        if suffix is not None:
            base = plain.removesuffix(suffix) + ".weight"
            pairs.setdefault(base, {})[PAIR_SUFFIXES[suffix]] = tensor
        elif plain.endswith(".base_layer.weight"):
            continue  # a copy of the base weight some PEFT versions save
        elif "_layernorm" in plain or ".norm" in plain:
            whole[plain] = tensor
        else:
            raise ConversionError(
                f"{folder}: tensor {name!r} is not a LoRA pair; full weights in an adapter "
                "(modules_to_save, an embedding grown for new tokens) cannot be a GGUF adapter"
            )
    for base, pair in pairs.items():
        if set(pair) != {"a", "b"}:
            raise ConversionError(f"{folder}: {base} has lora_{''.join(pair).upper()} only")
    return pairs, whole


def _storage(name: str, ndim: int, out_type: OutType) -> gguf.GGMLQuantizationType:
    """As llama.cpp's converter types them: 1-D tensors and norms F32, pairs the out type."""
    if ndim <= 1 or name.endswith("_norm.weight"):
        return Q.F32
    assert out_type.float_type is not None
    return out_type.float_type


def _gguf_name(arch: Architecture, name: str, folder: Path) -> tuple[gguf.MODEL_TENSOR, str]:
    found = arch.name_map.get_type_and_name(name, try_suffixes=(".weight", ".bias"))
    if found is None:
        raise ConversionError(
            f"{folder}: adapted tensor {name!r} has no GGUF name for architecture {arch.arch_name}"
        )
    kind, gguf_name = found
    if kind == T.OUTPUT and arch.tied_embeddings:
        raise ConversionError(
            f"{folder}: the adapter changes lm_head, which this base model "
            "ties to its embedding (llama.cpp has no separate output to adapt)"
        )
    return kind, gguf_name


def _loader(
    tensor: LazyTensor, transform: Callable | None, transpose: bool = False
) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        data = tensor.load()
        if transpose:
            data = data.T
        return transform(data) if transform is not None else data

    return load


def plan_adapter(
    arch: Architecture, tensors: dict[str, LazyTensor], folder: Path, out_type: OutType
) -> list[PlannedTensor]:
    pairs, whole = _pairs(tensors, folder)
    planned: list[PlannedTensor] = []
    for name, pair in pairs.items():
        kind, gguf_name = _gguf_name(arch, name, folder)
        a, b = pair["a"], pair["b"]
        # llama.cpp's embedding lookup wants token_embd's lora_a as (rows, rank), which is
        # PEFT's lora_embedding_A transposed.
        flip = kind == T.TOKEN_EMBD
        a_shape = tuple(reversed(a.shape)) if flip else tuple(a.shape)
        for suffix, tensor, shape, transform in (
            ("lora_a", a, a_shape, None),
            ("lora_b", b, tuple(b.shape), arch.transform(kind)),
        ):
            full = f"{gguf_name}.{suffix}"
            planned.append(
                PlannedTensor(
                    full,
                    shape,
                    _storage(full, len(shape), out_type),
                    _loader(tensor, transform, flip and suffix == "lora_a"),
                )
            )
    for name, tensor in whole.items():
        kind, gguf_name = _gguf_name(arch, name, folder)
        planned.append(
            PlannedTensor(
                gguf_name,
                tuple(tensor.shape),
                _storage(gguf_name, len(tensor.shape), out_type),
                _loader(tensor, arch.transform(kind)),
            )
        )
    if not planned:
        raise ConversionError(f"{folder}: the adapter holds no tensors")
    return planned


def convert_adapter(
    folder: Path,
    output: Path,
    out_type: OutType,
    *,
    base: Path | None = None,
    force: bool = False,
    progress: bool = True,
    name: str | None = None,
) -> ConvertedAdapter:
    """Convert the PEFT adapter `folder` into the GGUF adapter `output` (whole or not at all)."""
    if out_type.name not in ADAPTER_OUT_TYPES:
        raise ConversionError(
            f"a LoRA adapter converts to {', '.join(ADAPTER_OUT_TYPES)}, not "
            f"{out_type.name} (it is small, and llama.cpp applies it in float)"
        )
    if output.exists() and not force:
        raise ConversionError(f"{output} exists; pass --force to overwrite it")
    config = read_json(folder / ADAPTER_CONFIG)
    alpha = lora_alpha(config, folder)
    tensors = _adapter_tensors(folder)
    base_dir = base_folder(folder, config, base)
    arch = architecture_for(
        Checkpoint(
            base_dir, hf_config(read_json(base_dir / "config.json")), {}, hf_rope_layout=True
        )
    )
    planned = plan_adapter(arch, tensors, folder, out_type)
    invocation = config.get("alora_invocation_tokens")

    def metadata(writer: gguf.GGUFWriter) -> None:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_name(name or folder.resolve().name)
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        if invocation:
            writer.add_key_value(
                gguf.Keys.Adapter.ALORA_INVOCATION_TOKENS,
                [int(t) for t in invocation],
                gguf.GGUFValueType.ARRAY,
                gguf.GGUFValueType.UINT32,
            )
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    logger.info(
        "converting LoRA adapter %s (%s base, %d tensors, alpha %g) to %s",
        folder,
        arch.arch_name,
        len(planned),
        alpha,
        out_type.name,
    )
    with staged_output(output) as staged:
        write_gguf(staged, arch.arch_name, metadata, planned, progress)
    return ConvertedAdapter(output, arch.arch_name, len(planned), out_type.name, alpha)
