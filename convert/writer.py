"""Streaming a planned model into a GGUF file with gguf-py's writer.

The writer learns every tensor's name, shape and type up front (`add_tensor_info`), writes the
header, metadata and tensor index, then receives the tensors one at a time: each is loaded,
transformed, encoded, written and dropped before the next is touched. That keeps peak memory near
the largest tensor, whatever the size of the model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from tqdm import tqdm

logger = logging.getLogger(__name__)

Q = gguf.GGMLQuantizationType
_BYTES_PER_ELEMENT = {Q.F32: 4, Q.F16: 2, Q.BF16: 2}
# The numpy dtype each float type is held in (bfloat16 as its raw 16 bits).
_NUMPY_TYPES = {
    Q.F32: np.dtype(np.float32),
    Q.F16: np.dtype(np.float16),
    Q.BF16: np.dtype(np.uint16),
}


@dataclass(frozen=True)
class PlannedTensor:
    """A GGUF tensor to write: where its data comes from and the float type it is stored in."""

    name: str
    shape: tuple[int, ...]
    ggml_type: gguf.GGMLQuantizationType
    load: Callable[[], np.ndarray]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * _BYTES_PER_ELEMENT[self.ggml_type]

    def encoded(self) -> np.ndarray:
        data = self.load()
        if self.ggml_type == Q.F32:
            return np.ascontiguousarray(data, dtype=np.float32)
        if self.ggml_type == Q.F16:
            return np.ascontiguousarray(data, dtype=np.float16)
        # bfloat16 rounding (nearest-even, NaN kept) is gguf-py's, as llama.cpp's converter uses
        encoded = gguf.quants.quantize(np.asarray(data, dtype=np.float32), Q.BF16)
        return encoded.view(np.uint16)  # gguf-py hands back raw bytes; keep the element shape


MetadataWriter = Callable[[gguf.GGUFWriter], None]


def write_gguf(
    path: Path,
    arch_name: str,
    metadata: MetadataWriter,
    tensors: list[PlannedTensor],
    progress: bool = True,
) -> None:
    """Write a complete GGUF at `path`, streaming `tensors` in order."""
    writer = gguf.GGUFWriter(path, arch_name)
    metadata(writer)
    for tensor in tensors:
        writer.add_tensor_info(
            tensor.name,
            tensor.shape,
            _NUMPY_TYPES[tensor.ggml_type],
            tensor.nbytes,
            raw_dtype=tensor.ggml_type,
        )
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    total = sum(t.nbytes for t in tensors)
    with tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc=path.name.split(".partial")[0],
        disable=None if progress else True,
    ) as bar:
        for count, tensor in enumerate(tensors, start=1):
            data = tensor.encoded()
            if tuple(data.shape) != tensor.shape:
                raise ValueError(
                    f"{tensor.name}: produced shape {data.shape}, planned {tensor.shape}"
                )
            writer.write_tensor_data(data)
            del data
            bar.set_postfix_str(f"{count}/{len(tensors)} tensors", refresh=False)
            bar.update(tensor.nbytes)
    writer.close()


@contextlib.contextmanager
def staged_output(final: Path) -> Iterator[Path]:
    """A temporary file beside `final`, renamed onto it only if the block succeeds.

    Any failure, Ctrl-C included, removes the temporary file, so a GGUF at `final` is always
    complete. Beside (not in /tmp) so that the rename is atomic and the disk is the same.
    """
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".partial")
    os.close(fd)
    staged = Path(name)
    try:
        yield staged
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
    os.replace(staged, final)


@contextlib.contextmanager
def scratch_file(beside: Path, label: str) -> Iterator[Path]:
    """A temporary file beside `beside` that is removed however the block ends."""
    fd, name = tempfile.mkstemp(
        dir=beside.parent, prefix=f".{beside.name}.{label}.", suffix=".partial"
    )
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
