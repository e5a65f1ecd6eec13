"""A GGUF's metadata, read from its header alone.

gguf-py's GGUFReader parses every tensor and turns each vocabulary array into numpy
objects: about 6 s for the bundled 135M model on a 2-core machine, far too slow for
`hearth list` or a server scanning its library. Listing needs a few scalar keys, so this
walks the key/value section, keeps scalars and strings, and steps over arrays, noting only
their length.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

MAGIC = b"GGUF"

# GGUF value types: the scalar ones by their struct format, then string (8), array (9).
SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
STRING, ARRAY = 8, 9


class NotGGUF(ValueError):
    """The file is not a GGUF, or its header is cut short."""


class ArrayValue:
    """An array-valued key, stood in for by its length."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __repr__(self) -> str:
        return f"ArrayValue({self.length})"


def read_metadata(path: Path) -> dict[str, object]:
    with path.open("rb") as file:
        try:
            data = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:
            raise NotGGUF(f"{path} is empty") from None
        with data:
            return _Walker(data, path).metadata()


class _Walker:
    def __init__(self, data: mmap.mmap, path: Path) -> None:
        self.data = data
        self.path = path
        self.at = 0

    def take(self, fmt: str) -> object:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise NotGGUF(f"{self.path}: the GGUF header is truncated")
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return value

    def string(self) -> str:
        length = self.take("<Q")
        assert isinstance(length, int)
        end = self.at + length
        if end > len(self.data):
            raise NotGGUF(f"{self.path}: the GGUF header is truncated")
        text = self.data[self.at : end].decode("utf-8", errors="replace")
        self.at = end
        return text

    def value(self, kind: int) -> object:
        if kind in SCALARS:
            return self.take(SCALARS[kind])
        if kind == STRING:
            return self.string()
        if kind == ARRAY:
            item_kind = self.take("<I")
            length = self.take("<Q")
            assert isinstance(item_kind, int) and isinstance(length, int)
            if item_kind in SCALARS:  # fixed size: jump over the lot
                self.at += struct.calcsize(SCALARS[item_kind]) * length
            else:
                for _ in range(length):
                    self.value(item_kind)
            return ArrayValue(length)
        raise NotGGUF(f"{self.path}: unknown GGUF value type {kind}")

    def metadata(self) -> dict[str, object]:
        if self.data[:4] != MAGIC:
            raise NotGGUF(f"{self.path} is not a GGUF file")
        self.at = 4
        self.take("<I")  # version
        self.take("<Q")  # tensor count
        count = self.take("<Q")
        assert isinstance(count, int)
        found: dict[str, object] = {}
        for _ in range(count):
            key = self.string()
            kind = self.take("<I")
            assert isinstance(kind, int)
            found[key] = self.value(kind)
        return found
