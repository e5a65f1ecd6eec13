"""One saved prompt state on disk: a checked head, the tokens, and llama.cpp's KV bytes.

Layout, little-endian:

    magic        8 bytes   b"HEARTHKV"
    version      u32       FORMAT_VERSION (of this layout, not of llama.cpp's state)
    head_bytes   u32       length of the JSON head
    head_crc     u32       zlib.crc32 of the JSON head
    head         JSON      key, n_tokens, tokens_crc, payload_bytes, payload_crc
    tokens       n_tokens x int32
    payload      payload_bytes of llama_state_seq_get_data

The key (engine/state_key.py) names everything the KV bytes depend on: a file is loaded
only into an engine whose key is equal. The tokens come before the payload so that an
index can be built from heads and tokens alone, without reading megabytes of KV. Both
tokens and payload carry a CRC-32: a wrong token would make a prefix match restore KV of
other text, and a wrong KV byte would make the model read something nobody wrote. CRC-32
rather than a cryptographic hash because the threat is a bad disk or a cut write, not an
attacker with write access to the data directory (who could change the model too), and
it checks 100 MB in about 40 ms where blake2b takes 160.

Files are written whole or not at all: to a temporary name in the same directory, fsynced,
then renamed over the final name (os.replace is atomic within a filesystem).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"HEARTHKV"
FORMAT_VERSION = 1
PREAMBLE = struct.Struct("<8sIII")  # magic, version, head_bytes, head_crc
SUFFIX = ".kvc"
TEMP_PREFIX = ".writing-"
# No head of ours comes near this; a larger length is damage, not a big key.
MAX_HEAD_BYTES = 1 << 20

Key = dict[str, Any]


class PromptFileError(Exception):
    """A prompt-cache file that cannot be used."""


class CorruptPromptFile(PromptFileError):
    """Damaged or cut short: delete it."""


class ForeignPromptFile(PromptFileError):
    """Sound, but written for another model, build or setting: leave it alone."""


@dataclass(frozen=True)
class PromptFileHead:
    tokens: bytes  # int32 little-endian, as stored (compared as bytes: see disk_cache)
    payload_offset: int
    payload_bytes: int
    payload_crc: int

    @property
    def n_tokens(self) -> int:
        return len(self.tokens) // 4

    @property
    def file_bytes(self) -> int:
        return self.payload_offset + self.payload_bytes


def token_bytes(tokens: Sequence[int]) -> bytes:
    packed = array("i", tokens)
    if packed.itemsize != 4:  # pragma: no cover - every platform Hearth runs on
        raise RuntimeError("int32 arrays are needed for prompt-cache files")
    if sys.byteorder != "little":  # pragma: no cover
        packed.byteswap()
    return packed.tobytes()


def token_digest(tokens: bytes) -> str:
    """A file name for a prompt: the same tokens always get the same file."""
    return hashlib.blake2b(tokens, digest_size=16).hexdigest()


def tokens_of(raw: bytes) -> list[int]:
    packed = array("i")
    packed.frombytes(raw)
    if sys.byteorder != "little":  # pragma: no cover
        packed.byteswap()
    return packed.tolist()


def encode(key: Key, tokens: bytes, payload: bytes | bytearray) -> tuple[bytes, bytes]:
    """The preamble with head, and the tokens: everything that goes before the payload."""
    head = json.dumps(
        {
            "key": key,
            "n_tokens": len(tokens) // 4,
            "tokens_crc": zlib.crc32(tokens),
            "payload_bytes": len(payload),
            "payload_crc": zlib.crc32(payload),
        },
        sort_keys=True,
    ).encode()
    return PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(head), zlib.crc32(head)) + head, tokens


def write(path: Path, key: Key, tokens: bytes, payload: bytes | bytearray) -> int:
    """Write a prompt file atomically; returns its size. Raises OSError (disk full...)."""
    head, tokens = encode(key, tokens, payload)
    fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            for part in (head, tokens, payload):
                file.write(part)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)
    return len(head) + len(tokens) + len(payload)


def read_head(path: Path, key: Key) -> PromptFileHead:
    """A file's head and tokens, checked; raises CorruptPromptFile or ForeignPromptFile."""
    with path.open("rb") as file:
        size = os.fstat(file.fileno()).st_size
        return _read_head(file, size, key)


def _read_head(file: BinaryIO, size: int, key: Key) -> PromptFileHead:
    preamble = file.read(PREAMBLE.size)
    if len(preamble) < PREAMBLE.size:
        raise CorruptPromptFile("shorter than its preamble")
    magic, version, head_bytes, head_crc = PREAMBLE.unpack(preamble)
    if magic != MAGIC:
        raise CorruptPromptFile("not a prompt-cache file (magic)")
    if version != FORMAT_VERSION:
        raise ForeignPromptFile(f"format version {version}, this build reads {FORMAT_VERSION}")
    if head_bytes > MAX_HEAD_BYTES:
        raise CorruptPromptFile("head length out of range")
    raw = file.read(head_bytes)
    if len(raw) < head_bytes or zlib.crc32(raw) != head_crc:
        raise CorruptPromptFile("head damaged or cut short")
    try:
        head = json.loads(raw)
        n_tokens, payload_bytes = int(head["n_tokens"]), int(head["payload_bytes"])
        tokens_crc, payload_crc = int(head["tokens_crc"]), int(head["payload_crc"])
        stored_key = head["key"]
    except (ValueError, KeyError, TypeError) as error:
        raise CorruptPromptFile(f"head unreadable ({error})") from None
    if stored_key != key:
        raise ForeignPromptFile("written for another model, build or setting")
    offset = PREAMBLE.size + head_bytes + 4 * n_tokens
    if n_tokens < 1 or payload_bytes < 1 or offset + payload_bytes != size:
        raise CorruptPromptFile(f"{size} bytes where its head says {offset + payload_bytes}")
    tokens = file.read(4 * n_tokens)
    if zlib.crc32(tokens) != tokens_crc:
        raise CorruptPromptFile("tokens damaged")
    return PromptFileHead(tokens, offset, payload_bytes, payload_crc)


def read_payload(path: Path, key: Key, expected: PromptFileHead) -> bytearray:
    """The KV bytes of a file whose head is `expected`, checked against its CRC.

    The head is read again: the file may have been replaced since it was indexed (another
    process writing the same prompt), and only bytes under a head that matches are used.
    """
    with path.open("rb") as file:
        head = _read_head(file, os.fstat(file.fileno()).st_size, key)
        if head != expected:
            raise ForeignPromptFile("replaced since it was indexed")
        payload = bytearray(head.payload_bytes)
        if file.readinto(payload) != head.payload_bytes:
            raise CorruptPromptFile("payload cut short")
    if zlib.crc32(payload) != head.payload_crc:
        raise CorruptPromptFile("payload damaged (checksum)")
    return payload


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); where directories cannot be opened, skip."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
