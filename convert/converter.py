"""Checkpoint folder -> GGUF: plan every tensor, write metadata and tensors, quantize.

Everything that can be checked before writing is checked first (the architecture, every tensor
name, every shape, the config keys, the tokenizer), so a bad checkpoint fails in a second with
one line instead of after minutes of writing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from hearth.convert.architectures import Architecture, architecture_for
from hearth.convert.checkpoint import LazyTensor, open_checkpoint
from hearth.convert.errors import ConversionError
from hearth.convert.quantize import LOSSLESS, OutType, quantize_gguf
from hearth.convert.tokenizer_check import check_tokenizer
from hearth.convert.vocab import Vocabulary, load_vocabulary
from hearth.convert.writer import PlannedTensor, scratch_file, staged_output, write_gguf

logger = logging.getLogger(__name__)
Q = gguf.GGMLQuantizationType
T = gguf.MODEL_TENSOR


@dataclass(frozen=True)
class ConvertedModel:
    path: Path
    architecture: str
    tensors: int
    out_type: str


def default_output(name: str, out_type: OutType) -> Path:
    """`<model name>-<TYPE>.gguf` in the current directory."""
    return Path.cwd() / f"{name}-{out_type.name.upper()}.gguf"


# 2-D tensors llama.cpp keeps in F32 whatever the file type (as its converter and quantizer do):
# MoE routers and GPT-2's learned position embeddings.
F32_KINDS = frozenset({T.FFN_GATE_INP, T.FFN_GATE_INP_SHEXP, T.POS_EMBD})


def storage_type(
    name: str, ndim: int, base: gguf.GGMLQuantizationType, kind: gguf.MODEL_TENSOR | None = None
) -> gguf.GGMLQuantizationType:
    """Norms, biases and other 1-D tensors stay F32: llama.cpp's kernels expect them so."""
    if ndim <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight"):
        return Q.F32
    return Q.F32 if kind in F32_KINDS else base


def _transformed(source: LazyTensor, transform: Callable | None) -> Callable[[], np.ndarray]:
    if transform is None:
        return source.load
    return lambda: transform(source.load())


def plan_tensors(arch: Architecture, out_type: OutType) -> list[PlannedTensor]:
    """Map, check and type every checkpoint tensor; raise on anything unmapped or misshapen."""
    expected = arch.expected_shapes()
    planned: list[PlannedTensor] = []
    for source_name, source in arch.source_tensors().items():
        if arch.skip(source_name):
            continue
        found = arch.name_map.get_type_and_name(source_name, try_suffixes=(".weight", ".bias"))
        if found is None:
            raise ConversionError(
                f"tensor {source_name!r} has no GGUF name for architecture {arch.arch_name}"
            )
        kind, name = found
        want = expected.get(kind)
        if want is not None and name.endswith(".bias"):
            want = want[:1]
        if want is not None and tuple(source.shape) != want:
            raise ConversionError(
                f"tensor {source_name!r} has shape {list(source.shape)}, "
                f"the config implies {list(want)}"
            )
        # Not `or`: F32 is GGML type 0, which is falsy.
        base = LOSSLESS[source.dtype] if out_type.float_type is None else out_type.float_type
        ggml_type = storage_type(name, len(source.shape), base, kind)
        planned.append(
            PlannedTensor(
                name, tuple(source.shape), ggml_type, _transformed(source, arch.transform(kind))
            )
        )
    for name, data in arch.extra_tensors():
        planned.append(PlannedTensor(name, data.shape, Q.F32, lambda d=data: d))
    _check_complete(arch, planned)
    return planned


def _check_complete(arch: Architecture, planned: list[PlannedTensor]) -> None:
    names = {t.name for t in planned}
    missing = [name for name in arch.required_tensors() if name not in names]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ConversionError(f"the checkpoint lacks {shown}")


def _metadata(
    arch: Architecture, vocab: Vocabulary, file_type: gguf.LlamaFileType, name: str
) -> Callable[[gguf.GGUFWriter], None]:
    def write(writer: gguf.GGUFWriter) -> None:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        arch.write_hparams(writer)
        writer.add_file_type(file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        vocab.write(writer, arch.checkpoint.tokenizer_files)

    return write


def _lossless_file_type(planned: list[PlannedTensor]) -> gguf.LlamaFileType:
    types = {t.ggml_type for t in planned if t.ggml_type != Q.F32}
    return {Q.F16: gguf.LlamaFileType.MOSTLY_F16, Q.BF16: gguf.LlamaFileType.MOSTLY_BF16}.get(
        min(types, default=Q.F32), gguf.LlamaFileType.ALL_F32
    )


def convert_checkpoint(
    source: Path,
    output: Path,
    out_type: OutType,
    *,
    force: bool = False,
    progress: bool = True,
    threads: int | None = None,
    name: str | None = None,
) -> ConvertedModel:
    """Convert the checkpoint folder `source` into `output` (complete or not there at all).

    `name` is the model's general.name; by default the folder's name (a Hub snapshot's
    folder is a commit hash, so a downloaded checkpoint passes its repository's name).
    """
    if output.exists() and not force:
        raise ConversionError(f"{output} exists; pass --force to overwrite it")
    if not output.parent.is_dir():
        raise ConversionError(f"{output.parent} is not a folder")
    checkpoint = open_checkpoint(source)
    arch = architecture_for(checkpoint)
    planned = plan_tensors(arch, out_type)
    rows = next(t.shape[0] for t in planned if t.name == "token_embd.weight")
    vocab = load_vocabulary(checkpoint.tokenizer_files, rows)
    arch.adjust_vocabulary(vocab)
    name = name or source.resolve().name
    logger.info(
        "converting %s (%s, %d tensors) to %s", source, arch.arch_name, len(planned), out_type.name
    )
    with staged_output(output) as staged:
        if not out_type.quantized:
            write_gguf(
                staged,
                arch.arch_name,
                _metadata(arch, vocab, out_type.file_type, name),
                planned,
                progress,
            )
        else:
            with scratch_file(output, "lossless") as lossless:
                metadata = _metadata(arch, vocab, _lossless_file_type(planned), name)
                write_gguf(lossless, arch.arch_name, metadata, planned, progress)
                logger.info("quantizing to %s with llama.cpp", out_type.name)
                quantize_gguf(lossless, staged, out_type, threads)
        # Inside the staged block: a vocabulary that reads text differently leaves no file.
        check_tokenizer(staged, checkpoint.tokenizer_files, vocab.eos(checkpoint.tokenizer_files))
    return ConvertedModel(output, arch.arch_name, len(planned), out_type.name)
