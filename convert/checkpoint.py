"""Checkpoint folders as people have them, opened lazily.

A `Checkpoint` is a config (Hugging Face `config.json` names) plus a name -> `LazyTensor`
table. Nothing is read until a tensor's `load()` is called, so converting streams one tensor at
a time and peak memory stays near the largest tensor.

Formats are a registry of `WeightFormat`s tried in order. safetensors is parsed with numpy
memory maps and never imports torch; `.bin` and `.pth` go through
`torch.load(weights_only=True, mmap=True)`, which cannot run code from the checkpoint.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hearth.convert.errors import ConversionError

# Source dtypes the converter accepts, named as in safetensors headers.
_SAFETENSORS_DTYPES: dict[str, str] = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}


@dataclass(frozen=True)
class LazyTensor:
    """A tensor whose shape and dtype are known but whose data is read on `load()`.

    `dtype` is the source precision ("F32", "F16" or "BF16"); `load()` returns float32 for F32
    and BF16 (bfloat16 widens to float32 exactly) and float16 for F16.
    """

    shape: tuple[int, ...]
    dtype: str
    load: Callable[[], np.ndarray]


@dataclass
class Checkpoint:
    """A model folder: its config, its tensors, and where its tokenizer files are."""

    folder: Path
    config: dict[str, Any]
    tensors: dict[str, LazyTensor]
    # Meta's consolidated.*.pth keep Q/K rows in the interleaved rope order llama.cpp uses;
    # Hugging Face checkpoints were permuted to the half-split order and must be permuted back.
    hf_rope_layout: bool = True
    tokenizer_folder: Path | None = None  # where the tokenizer files are; None: `folder`

    @property
    def tokenizer_files(self) -> Path:
        return self.tokenizer_folder or self.folder

    @property
    def architecture(self) -> str:
        names = self.config.get("architectures") or []
        if not names:
            raise ConversionError(f"{self.folder / 'config.json'} names no 'architectures'")
        return str(names[0])


def bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bits (as uint16) to float32: bfloat16 is the top half of a float32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


def _open_safetensors(path: Path) -> dict[str, LazyTensor]:
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ConversionError(
                    f"{path} is truncated or corrupt: its header claims {header_len} bytes, "
                    f"the file has {size}"
                )
            header = json.loads(f.read(header_len))
    except (struct.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConversionError(f"{path} is not a readable safetensors file ({e})") from e
    data_start = 8 + header_len
    tensors: dict[str, LazyTensor] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        if data_start + end > size:
            raise ConversionError(
                f"{path} is truncated: {name} ends at byte {data_start + end}, file has {size}"
            )
        dtype = info["dtype"]
        if dtype not in _SAFETENSORS_DTYPES:
            raise ConversionError(f"{path}: tensor {name} has unsupported dtype {dtype}")
        tensors[name] = LazyTensor(
            tuple(info["shape"]), dtype, _memmap_loader(path, data_start + begin, info, dtype)
        )
    return tensors


def _memmap_loader(path: Path, offset: int, info: dict[str, Any], dtype: str) -> Callable:
    shape = tuple(info["shape"])

    def load() -> np.ndarray:
        count = int(np.prod(shape)) if shape else 1
        raw = np.memmap(
            path, dtype=_SAFETENSORS_DTYPES[dtype], mode="r", offset=offset, shape=(count,)
        )
        array = bf16_to_f32(raw) if dtype == "BF16" else raw
        return array.reshape(shape)

    return load


_TORCH_DTYPES = {"torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16"}


def open_torch_file(path: Path) -> dict[str, LazyTensor]:
    """Open a `.bin` / `.pth` without unpickling code: weights_only refuses anything else."""
    try:
        import torch
    except ImportError as e:
        raise ConversionError(
            f"{path.name} is a PyTorch pickle; reading it needs torch "
            "(pip install 'hearth[torch]'), or convert the checkpoint to safetensors"
        ) from e
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises bare RuntimeError/UnpicklingError for bad files
        raise ConversionError(f"cannot read {path}: {str(e).splitlines()[0]}") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    tensors: dict[str, LazyTensor] = {}
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        dtype = _TORCH_DTYPES.get(str(tensor.dtype))
        if dtype is None:
            raise ConversionError(f"{path}: tensor {name} has unsupported dtype {tensor.dtype}")
        tensors[name] = LazyTensor(tuple(tensor.shape), dtype, _torch_loader(tensor))
    return tensors


def _torch_loader(tensor: Any) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import torch

        if tensor.dtype == torch.bfloat16:
            return tensor.to(torch.float32).numpy()
        return tensor.numpy()

    return load


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ConversionError(f"{path} is missing") from e
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path} is not valid JSON ({e})") from e


def hf_config(config: dict[str, Any]) -> dict[str, Any]:
    """One spelling for the rope settings: transformers 5 moved them into `rope_parameters`."""
    rope = config.get("rope_parameters")
    if isinstance(rope, dict):
        config.setdefault("rope_theta", rope.get("rope_theta"))
        if rope.get("rope_type", "default") != "default":
            config.setdefault("rope_scaling", rope)
    return config


@dataclass(frozen=True)
class WeightFormat:
    """One way a Hugging Face folder stores its weights: a single file, an index, or shards."""

    describe: str
    single: str
    index: str
    shard_prefix: str
    shard_suffix: str
    opener: Callable[[Path], dict[str, LazyTensor]]

    def files(self, folder: Path) -> list[Path] | None:
        if (folder / self.index).is_file():
            weight_map = read_json(folder / self.index).get("weight_map", {})
            names = sorted(set(weight_map.values()))
            return [folder / name for name in names]
        if (folder / self.single).is_file():
            return [folder / self.single]
        return self._numbered_shards(folder)

    def _numbered_shards(self, folder: Path) -> list[Path] | None:
        """`model-00001-of-00003.safetensors` without an index: all k of n must be there."""
        regex = re.compile(
            re.escape(self.shard_prefix) + r"-(\d+)-of-(\d+)" + re.escape(self.shard_suffix)
        )
        found = [(regex.fullmatch(p.name), p) for p in folder.iterdir()]
        shards = {int(m[1]): (int(m[2]), p) for m, p in found if m}
        if not shards:
            return None
        total = max(n for n, _ in shards.values())
        missing = [
            f"{self.shard_prefix}-{k:05d}-of-{total:05d}{self.shard_suffix}"
            for k in range(1, total + 1)
            if k not in shards
        ]
        if missing:
            raise ConversionError(f"{folder}: shard(s) missing: {', '.join(missing)}")
        return [shards[k][1] for k in range(1, total + 1)]


HF_FORMATS: tuple[WeightFormat, ...] = (
    WeightFormat(
        "safetensors",
        "model.safetensors",
        "model.safetensors.index.json",
        "model",
        ".safetensors",
        _open_safetensors,
    ),
    WeightFormat(
        "PyTorch .bin",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "pytorch_model",
        ".bin",
        open_torch_file,
    ),
)


def _merge_shards(files: Iterable[Path], opener: Callable) -> dict[str, LazyTensor]:
    tensors: dict[str, LazyTensor] = {}
    for path in files:
        if not path.is_file():
            raise ConversionError(f"shard {path.name} is listed in the index but missing")
        tensors.update(opener(path))
    return tensors


def open_checkpoint(folder: Path) -> Checkpoint:
    """Open a Hugging Face folder or a Meta `consolidated.*.pth` folder, lazily."""
    from hearth.convert.meta_checkpoint import is_meta_folder, open_meta_checkpoint

    if not folder.is_dir():
        raise ConversionError(f"{folder} is not a folder")
    if is_meta_folder(folder):
        return open_meta_checkpoint(folder)
    config = hf_config(read_json(folder / "config.json"))
    for weight_format in HF_FORMATS:
        files = weight_format.files(folder)
        if files:
            tensors = _merge_shards(files, weight_format.opener)
            return Checkpoint(folder, config, tensors, hf_rope_layout=True)
    looked = ", ".join(f.single for f in HF_FORMATS)
    raise ConversionError(
        f"{folder} has no weights (looked for {looked}, shards, consolidated.*.pth)"
    )
