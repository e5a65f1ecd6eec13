"""Architectures the converter knows: a registry of small classes over gguf-py's tables.

`base` holds what they share (the decoder model, `HParam`, `register`, the rope hooks); each
family module beside it (llama, qwen, gemma, ...) holds a few classes that say only what differs
and register themselves. Adding an architecture is one small module, imported here.
"""

from __future__ import annotations

from hearth.convert.architectures import (
    falcon,
    gemma,
    gpt2,
    llama,
    olmo,
    phi,
    qwen,
    stablelm,
    starcoder,
)
from hearth.convert.architectures.base import (
    ARCHITECTURES,
    Architecture,
    HParam,
    architecture_for,
    register,
    rope_factor_tensors,
)
from hearth.convert.architectures.llama import permute_for_llama_rope

__all__ = [
    "ARCHITECTURES",
    "Architecture",
    "HParam",
    "architecture_for",
    "falcon",
    "gemma",
    "gpt2",
    "llama",
    "olmo",
    "permute_for_llama_rope",
    "phi",
    "qwen",
    "register",
    "rope_factor_tensors",
    "stablelm",
    "starcoder",
]
