"""The prompt-cache file format: head, key, tokens and payload, each checked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearth.engine import prompt_file
from hearth.engine.disk_cache import shared_prefix
from hearth.engine.prompt_file import (
    CorruptPromptFile,
    ForeignPromptFile,
    token_bytes,
    tokens_of,
)
from hearth.engine.state_key import cache_folder, key_digest

KEY = {"model": {"path": "/m.gguf", "size": 10, "mtime_ns": 5, "head_crc": 7}, "n_ctx_seq": 512}
TOKENS = token_bytes(range(1, 301))
PAYLOAD = bytes(range(256)) * 40


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    path = tmp_path / ("a" + prompt_file.SUFFIX)
    size = prompt_file.write(path, KEY, TOKENS, PAYLOAD)
    assert size == path.stat().st_size
    return path


def test_a_written_file_reads_back_its_tokens_and_payload(stored):
    head = prompt_file.read_head(stored, KEY)
    assert tokens_of(head.tokens) == list(range(1, 301))
    assert head.n_tokens == 300 and head.payload_bytes == len(PAYLOAD)
    assert prompt_file.read_payload(stored, KEY, head) == PAYLOAD
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]  # no temporary left


@pytest.mark.parametrize(
    "changed",
    [
        {**KEY, "n_ctx_seq": 1024},
        {**KEY, "model": {**KEY["model"], "mtime_ns": 6}},
        {**KEY, "lora": None},
    ],
)
def test_a_file_under_another_key_is_foreign(stored, changed):
    with pytest.raises(ForeignPromptFile):
        prompt_file.read_head(stored, changed)


def test_another_format_version_is_foreign_not_corrupt(stored):
    data = bytearray(stored.read_bytes())
    data[8:12] = (prompt_file.FORMAT_VERSION + 1).to_bytes(4, "little")
    stored.write_bytes(data)
    with pytest.raises(ForeignPromptFile):
        prompt_file.read_head(stored, KEY)


def test_a_flipped_payload_byte_is_found_when_the_payload_is_read(stored):
    head = prompt_file.read_head(stored, KEY)
    data = bytearray(stored.read_bytes())
    data[head.payload_offset + 1000] ^= 0x40
    stored.write_bytes(data)
    head = prompt_file.read_head(stored, KEY)  # the head is sound; the index can hold it
    with pytest.raises(CorruptPromptFile, match="checksum"):
        prompt_file.read_payload(stored, KEY, head)


@pytest.mark.parametrize("where", ["magic", "head", "tokens"])
def test_damage_before_the_payload_is_corrupt(stored, where):
    data = bytearray(stored.read_bytes())
    head_len = int.from_bytes(data[12:16], "little")
    offset = {"magic": 0, "head": 24, "tokens": prompt_file.PREAMBLE.size + head_len + 8}[where]
    data[offset] ^= 0x01
    stored.write_bytes(data)
    with pytest.raises(CorruptPromptFile):
        prompt_file.read_head(stored, KEY)


@pytest.mark.parametrize("keep", [0, 10, 30, 500, -1])
def test_a_truncated_file_is_corrupt(stored, keep):
    data = stored.read_bytes()
    stored.write_bytes(data[:keep])
    with pytest.raises(CorruptPromptFile):
        prompt_file.read_head(stored, KEY)


def test_a_failed_write_leaves_neither_file_nor_temporary(tmp_path, monkeypatch):
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError):
        prompt_file.write(tmp_path / ("b" + prompt_file.SUFFIX), KEY, TOKENS, PAYLOAD)
    assert list(tmp_path.iterdir()) == []


def test_shared_prefix_counts_tokens_not_bytes():
    a = token_bytes([5, 6, 7, 8, 9])
    assert shared_prefix(a, a) == 5
    assert shared_prefix(a, token_bytes([5, 6, 7])) == 3
    assert shared_prefix(a, token_bytes([5, 6, 0, 8, 9])) == 2
    assert shared_prefix(a, token_bytes([5 + 256, 6])) == 0  # same low byte, other token
    assert shared_prefix(a, b"") == 0
    long = list(range(5000))
    assert shared_prefix(token_bytes(long), token_bytes(long[:4321] + [0])) == 4321


def test_each_key_has_its_own_folder_named_for_the_model(tmp_path):
    folder = cache_folder(tmp_path, Path("/models/My Model.Q4.gguf"), KEY)
    other = cache_folder(tmp_path, Path("/models/My Model.Q4.gguf"), {**KEY, "n_ctx_seq": 1})
    assert folder.name == f"My_Model.Q4-{key_digest(KEY)}"
    assert folder != other and folder.parent == other.parent == tmp_path
