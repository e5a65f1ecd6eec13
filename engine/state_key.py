"""What a saved KV state depends on: the key a prompt-cache file must match to be loaded.

A sequence's KV bytes are only right for the model, adapter, llama.cpp build and context
settings that computed them. Loaded under any other, llama.cpp may accept them (same
shapes) and the model would then read text that is not there. So the key names:
- the model file and the LoRA adapter: path, size, mtime_ns and a CRC of the first MiB
  (the GGUF header and most of its metadata), so a file replaced in place is another model;
  and the adapter's scale;
- the llama.cpp build: llama-cpp-python's version, llama.cpp's sequence-state version and
  its system info (CPU features and backends, which pick the kernels);
- every context setting that changes what the KV holds or how it is laid out: the cells per
  sequence, cache types, flash attention, RoPE/YaRN, attention and pooling types, SWA,
  unified KV, offloading (n_gpu_layers, offload_kqv, RPC workers, AMX kernels).
Left out on purpose: the number of slots (each slot has its own KV stream of n_ctx cells,
kv_unified off, so one sequence's state reads the same whatever the number of streams),
n_batch and threads (how the prompt was split into steps or rows, which already varies with
load: PREFILL_CHUNK_WHILE_DECODING), and sampling (it reads logits, never writes KV).
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import llama_cpp

from hearth.engine.prompt_file import Key

if TYPE_CHECKING:
    from hearth.engine.model import LlamaModel

IDENTITY_BYTES = 1 << 20

# llama_context_params fields that change the KV a sequence holds, or its layout.
STATE_PARAMS = (
    "type_k",
    "type_v",
    "flash_attn_type",
    "rope_scaling_type",
    "rope_freq_base",
    "rope_freq_scale",
    "yarn_ext_factor",
    "yarn_attn_factor",
    "yarn_beta_fast",
    "yarn_beta_slow",
    "yarn_orig_ctx",
    "attention_type",
    "pooling_type",
    "embeddings",
    "offload_kqv",
    "swa_full",
    "kv_unified",
)


def file_identity(path: Path) -> dict[str, object]:
    path = path.resolve()
    stat = path.stat()
    with path.open("rb") as file:
        head = file.read(IDENTITY_BYTES)
    return {
        "path": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "head_crc": zlib.crc32(head),
    }


def state_key(model: LlamaModel) -> Key:
    options = model.options
    params = model.context_params
    return {
        "model": file_identity(options.path),
        "lora": file_identity(options.lora) if options.lora is not None else None,
        "lora_scale": options.lora_scale if options.lora is not None else None,
        "llama_cpp": llama_cpp.__version__,
        "state_seq_version": llama_cpp.LLAMA_STATE_SEQ_VERSION,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "n_ctx_seq": model.n_ctx_seq,
        "n_gpu_layers": options.n_gpu_layers,
        "amx": options.amx,
        "rpc": list(options.rpc),
        "context": {name: _plain(getattr(params, name)) for name in STATE_PARAMS},
    }


def key_digest(key: Key) -> str:
    return hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=8).hexdigest()


def cache_folder(root: Path, model_path: Path, key: Key) -> Path:
    """Each key's files in a folder of their own, named for people (the model's file name)
    and for the key: an engine scans only its own folder at start, and the size bound is per
    folder. Folders of other keys are left alone (another server may be using them)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", model_path.stem)[:48]
    return root / f"{stem}-{key_digest(key)}"


def _plain(value: object) -> object:
    """A ctypes field as JSON: bools and ints as they are, floats as their exact repr."""
    if isinstance(value, bool | int | float):
        return value
    return int(value)  # enums arrive as ints already; anything else is a mistake to see
