"""Output types, and quantization by llama.cpp's own quantizer.

Float types (f32, f16, bf16) are written directly. Quantized types are made the way llama.cpp
makes them: the converter writes a lossless intermediate GGUF (every tensor in its source
precision) and `llama_model_quantize` turns it into the requested type. Quantizing from the
source precision rather than from an f16 copy is why q8_0 comes out byte-identical to what
convert_hf_to_gguf.py writes (it quantizes from the source floats too), and it saves the
k-quants one rounding.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf

from hearth.convert.errors import ConversionError

Q = gguf.GGMLQuantizationType


@dataclass(frozen=True)
class OutType:
    """One `--outtype`: a float type written directly, or a llama.cpp quantization."""

    name: str
    file_type: gguf.LlamaFileType
    float_type: gguf.GGMLQuantizationType | None = None  # None: quantized by llama.cpp
    llama_ftype: str | None = None  # the llama_cpp constant's name, read when quantizing
    about: str = ""

    @property
    def quantized(self) -> bool:
        return self.float_type is None


F = gguf.LlamaFileType
OUT_TYPES: dict[str, OutType] = {
    t.name: t
    for t in (
        OutType("f32", F.ALL_F32, Q.F32, about="full precision, 4 bytes a weight"),
        OutType("f16", F.MOSTLY_F16, Q.F16, about="lossless for most models, 2 bytes a weight"),
        OutType("bf16", F.MOSTLY_BF16, Q.BF16, about="bfloat16, as many models are trained"),
        OutType(
            "q8_0",
            F.MOSTLY_Q8_0,
            llama_ftype="LLAMA_FTYPE_MOSTLY_Q8_0",
            about="near lossless, about 8.5 bits a weight",
        ),
        OutType(
            "q6_k",
            F.MOSTLY_Q6_K,
            llama_ftype="LLAMA_FTYPE_MOSTLY_Q6_K",
            about="about 6.6 bits a weight",
        ),
        OutType(
            "q5_k_m",
            F.MOSTLY_Q5_K_M,
            llama_ftype="LLAMA_FTYPE_MOSTLY_Q5_K_M",
            about="about 5.7 bits a weight",
        ),
        OutType(
            "q4_k_m",
            F.MOSTLY_Q4_K_M,
            llama_ftype="LLAMA_FTYPE_MOSTLY_Q4_K_M",
            about="the usual choice: about 4.9 bits a weight",
        ),
        OutType(
            "q4_0",
            F.MOSTLY_Q4_0,
            llama_ftype="LLAMA_FTYPE_MOSTLY_Q4_0",
            about="legacy 4-bit, about 4.5 bits a weight",
        ),
    )
}
DEFAULT_OUT_TYPE = "q4_k_m"
# A LoRA adapter is small and llama.cpp applies it in float; quantizing it saves nothing.
ADAPTER_OUT_TYPES = ("f32", "f16", "bf16")
DEFAULT_ADAPTER_OUT_TYPE = "f16"

# A source dtype's own GGUF type: what the lossless intermediate holds.
LOSSLESS: dict[str, gguf.GGMLQuantizationType] = {"F32": Q.F32, "F16": Q.F16, "BF16": Q.BF16}


@contextlib.contextmanager
def _llama_cpp_quiet() -> Iterator[None]:
    """Hide llama.cpp's per-tensor log (and its "falling back to q5_0" notes) while quantizing.

    llama-cpp-python 0.3.36 maps llama.cpp's log levels with an older table in which WARN reads
    as ERROR, so only CRITICAL silences them; failures still surface as a non-zero status.
    """
    llama_logger = logging.getLogger("llama-cpp-python")
    level = llama_logger.level
    llama_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        llama_logger.setLevel(level)


def quantize_gguf(source: Path, dest: Path, out_type: OutType, threads: int | None = None) -> None:
    """Quantize `source` (a float GGUF) into `dest` with llama.cpp's `llama_model_quantize`."""
    import ctypes

    import llama_cpp

    if out_type.llama_ftype is None:
        raise ConversionError(f"{out_type.name} is not a quantized type")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, out_type.llama_ftype)
    params.nthread = threads or os.cpu_count() or 1
    with _llama_cpp_quiet():
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(dest).encode(), ctypes.byref(params)
        )
    if status != 0:
        raise ConversionError(f"llama.cpp failed to quantize to {out_type.name} (status {status})")
