"""Original Meta LLaMA folders: `consolidated.NN.pth` shards, `params.json`, `tokenizer.model`.

These are the checkpoints of the LLaMA / Alpaca / Vicuna era. The larger models were saved for
model-parallel inference: every matrix is split across the shards, column-parallel ones (wq, wk,
wv, w1, w3, output) along rows and row-parallel ones (wo, w2) along columns, while norms are
replicated. Merging concatenates each tensor's pieces when it is loaded, so only one merged
tensor is in memory at a time.

`params.json` is translated to Hugging Face config names so that one architecture class serves
both layouts; what it does not say (the intermediate size, the vocabulary size of LLaMA 1) is read
from the tensor shapes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hearth.convert.checkpoint import Checkpoint, LazyTensor, open_torch_file, read_json
from hearth.convert.errors import ConversionError

_SHARD = re.compile(r"consolidated\.(\d+)\.pth")

# Split along columns (dim 1) in Meta's model-parallel layers; everything else 2-D splits rows.
_ROW_PARALLEL = (".attention.wo.weight", ".feed_forward.w2.weight")


def is_meta_folder(folder: Path) -> bool:
    return (folder / "params.json").is_file() and any(folder.glob("consolidated.*.pth"))


def _shard_files(folder: Path) -> list[Path]:
    numbered = sorted(
        (int(m[1]), p) for p in folder.glob("consolidated.*.pth") if (m := _SHARD.fullmatch(p.name))
    )
    expected = list(range(len(numbered)))
    present = [n for n, _ in numbered]
    if present != expected:
        missing = sorted(set(range(max(present) + 1)) - set(present))
        raise ConversionError(
            f"{folder}: shard(s) missing: "
            + ", ".join(f"consolidated.{n:02d}.pth" for n in missing)
        )
    return [p for _, p in numbered]


def _concat_axis(name: str, piece_shape: tuple[int, ...], dim: int) -> int | None:
    """The axis a model-parallel tensor was split along, or None when it is replicated."""
    if len(piece_shape) < 2:
        return None
    if name == "tok_embeddings.weight":
        # LLaMA 1/2 split the embedding width; LLaMA 3 splits the vocabulary.
        return 0 if piece_shape[1] == dim else 1
    return 1 if name.endswith(_ROW_PARALLEL) else 0


def _merged(name: str, pieces: list[LazyTensor], dim: int) -> LazyTensor:
    if len(pieces) == 1:
        return pieces[0]
    axis = _concat_axis(name, pieces[0].shape, dim)
    if axis is None:
        return pieces[0]
    shape = list(pieces[0].shape)
    shape[axis] = sum(p.shape[axis] for p in pieces)
    loaders: list[Callable[[], np.ndarray]] = [p.load for p in pieces]

    def load() -> np.ndarray:
        return np.concatenate([piece() for piece in loaders], axis=axis)

    return LazyTensor(tuple(shape), pieces[0].dtype, load)


def _context_length(params: dict[str, Any]) -> int:
    # params.json never says; LLaMA 1 (norm_eps 1e-6) trained at 2048, LLaMA 2 at 4096 and
    # LLaMA 3 (rope_theta 500000) at 8192.
    if params.get("rope_theta", 10000.0) >= 500000:
        return 8192
    return 2048 if params.get("norm_eps", 1e-5) <= 1e-6 else 4096


def _as_hf_config(params: dict[str, Any], tensors: dict[str, LazyTensor]) -> dict[str, Any]:
    try:
        dim, n_heads = params["dim"], params["n_heads"]
        config = {
            "architectures": ["LlamaForCausalLM"],
            "hidden_size": dim,
            "num_hidden_layers": params["n_layers"],
            "num_attention_heads": n_heads,
            "num_key_value_heads": params.get("n_kv_heads") or n_heads,
            "rms_norm_eps": params["norm_eps"],
        }
    except KeyError as e:
        raise ConversionError(f"params.json lacks {e.args[0]!r}") from e
    config["rope_theta"] = params.get("rope_theta", 10000.0)
    config["max_position_embeddings"] = _context_length(params)
    if "layers.0.feed_forward.w1.weight" in tensors:
        config["intermediate_size"] = tensors["layers.0.feed_forward.w1.weight"].shape[0]
    if "tok_embeddings.weight" in tensors:
        config["vocab_size"] = tensors["tok_embeddings.weight"].shape[0]
    config["tie_word_embeddings"] = False
    return config


def open_meta_checkpoint(folder: Path) -> Checkpoint:
    params = read_json(folder / "params.json")
    files = _shard_files(folder)
    per_shard = [open_torch_file(path) for path in files]
    names = list(per_shard[0])
    for path, shard in zip(files[1:], per_shard[1:], strict=True):
        if set(shard) != set(names):
            raise ConversionError(f"{path.name} holds different tensors than {files[0].name}")
    dim = int(params.get("dim", 0))
    tensors = {name: _merged(name, [s[name] for s in per_shard], dim) for name in names}
    config = _as_hf_config(params, tensors)
    # Meta's own download keeps one tokenizer.model beside the 7B/, 13B/... folders.
    shared = (
        not (folder / "tokenizer.model").is_file() and (folder.parent / "tokenizer.model").is_file()
    )
    return Checkpoint(
        folder,
        config,
        tensors,
        hf_rope_layout=False,
        tokenizer_folder=folder.parent if shared else None,
    )
