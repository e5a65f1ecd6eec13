"""The disk cache's index, bound and writer, on files of made-up KV bytes (no model)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from hearth.engine import disk_cache, prompt_file
from hearth.engine.disk_cache import DiskPromptCache
from hearth.engine.prompt_file import token_bytes

KEY = {"model": "m", "n_ctx_seq": 4096}
STATE = 1000  # bytes of made-up KV a token


def tokens(start: int, count: int) -> list[int]:
    return list(range(start, start + count))


def state(count: int) -> bytearray:
    return bytearray(os.urandom(8)) * (count * STATE // 8)


def opened(folder: Path, budget: int = 1 << 30) -> DiskPromptCache:
    cache = DiskPromptCache(folder, budget, KEY)
    cache.open()
    return cache


def written(folder: Path, *prompts: list[int], budget: int = 1 << 30) -> DiskPromptCache:
    """A cache that wrote `prompts` in order and was closed, then opened again."""
    cache = opened(folder, budget)
    for prompt in prompts:
        assert cache.put(prompt, state(len(prompt)))
    cache.close()
    return opened(folder, budget)


def stored_prompts(folder: Path) -> list[list[int]]:
    return sorted(
        prompt_file.tokens_of(prompt_file.read_head(path, KEY).tokens)
        for path in folder.glob(f"*{prompt_file.SUFFIX}")
    )


def test_the_longest_prefix_wins_and_ties_go_to_the_smallest_file(tmp_path):
    system = tokens(0, 300)
    short, long = system + tokens(1000, 300), system + tokens(5000, 900)
    cache = written(tmp_path, long, short)
    entry, length = cache.best_match(system + tokens(9000, 10))
    assert (entry.tokens, length) == (short, 300)
    entry, length = cache.best_match(long[:700] + [7])
    assert (entry.tokens, length) == (long, 700)
    assert cache.best_match(tokens(20000, 400)) == (None, 0)


def test_a_longer_turn_of_the_same_conversation_replaces_the_shorter(tmp_path):
    turn = tokens(0, 400)
    cache = written(tmp_path, turn, turn + tokens(400, 100))
    assert stored_prompts(tmp_path) == [turn + tokens(400, 100)]
    assert len(cache) == 1


def test_what_is_on_disk_already_or_too_short_is_not_wanted(tmp_path):
    turn = tokens(0, 400)
    cache = written(tmp_path, turn)
    assert not cache.wants(turn)  # the same tokens
    assert not cache.wants(turn[:300])  # a prefix of them
    assert not cache.wants(turn + tokens(400, disk_cache.MIN_NEW_TOKENS_WORTH_STORING - 1))
    assert cache.wants(turn + tokens(400, disk_cache.MIN_NEW_TOKENS_WORTH_STORING))
    assert not cache.wants(tokens(9000, disk_cache.MIN_TOKENS_WORTH_STORING - 1))
    assert cache.wants(tokens(9000, disk_cache.MIN_TOKENS_WORTH_STORING))
    cache.close()


def test_the_bound_evicts_the_least_recently_used(tmp_path):
    first, second, third = tokens(0, 300), tokens(10000, 300), tokens(20000, 300)
    size = 300 * STATE + 2000  # a file: KV, tokens and head
    cache = written(tmp_path, first, second, budget=size * 5 // 2)
    entry, _ = cache.best_match(first)
    assert cache.read(entry) is not None  # the first is now used more recently
    cache.close()
    cache = opened(tmp_path, budget=size * 5 // 2)  # the order survives a restart
    assert cache.put(third, state(300))
    cache.close()
    assert stored_prompts(tmp_path) == [first, third]
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= size * 5 // 2


def test_a_state_larger_than_the_bound_is_not_written(tmp_path):
    cache = opened(tmp_path, budget=100 * STATE)
    assert not cache.put(tokens(0, 300), state(300))
    cache.close()
    assert stored_prompts(tmp_path) == []
    assert cache.report()["disk_cache_dropped_writes"] == 1


def test_a_writer_behind_by_the_backlog_drops_new_states_instead_of_waiting(tmp_path, monkeypatch):
    monkeypatch.setattr(disk_cache, "WRITE_BACKLOG_BYTES", 500 * STATE)
    gate, real_write = threading.Event(), prompt_file.write

    def slow_disk(*args: object) -> int:
        gate.wait()
        return real_write(*args)

    monkeypatch.setattr(prompt_file, "write", slow_disk)
    cache = opened(tmp_path)
    first, second = tokens(0, 300), tokens(1000, 300)
    assert cache.put(first, state(300))
    assert not cache.put(second, state(300))  # 600 of 500 would be waiting
    gate.set()
    cache.close()
    assert stored_prompts(tmp_path) == [first]
    assert cache.report()["disk_cache_dropped_writes"] == 1


def test_the_scan_deletes_damaged_files_and_stale_temporaries_and_keeps_foreign_ones(tmp_path):
    good, bad, foreign = tokens(0, 300), tokens(1000, 300), tokens(2000, 300)
    written(tmp_path, good, bad).close()
    damaged = tmp_path / (prompt_file.token_digest(token_bytes(bad)) + prompt_file.SUFFIX)
    damaged.write_bytes(damaged.read_bytes()[:-1])
    other = tmp_path / ("other" + prompt_file.SUFFIX)
    prompt_file.write(other, {**KEY, "n_ctx_seq": 8}, token_bytes(foreign), state(300))
    stale = tmp_path / (prompt_file.TEMP_PREFIX + "x" + prompt_file.SUFFIX)
    stale.write_bytes(b"half a file")
    os.utime(stale, (0, 0))
    fresh = tmp_path / (prompt_file.TEMP_PREFIX + "y" + prompt_file.SUFFIX)
    fresh.write_bytes(b"being written by another server now")

    cache = opened(tmp_path)
    assert [entry.tokens for entry in cache._entries.values()] == [good]
    assert not damaged.exists() and not stale.exists()
    assert other.exists() and fresh.exists()
    assert cache.stats.removed_corrupt == 1
    cache.close()


def test_a_cache_that_is_off_touches_no_disk(tmp_path):
    folder = tmp_path / "never"
    cache = DiskPromptCache(folder, 0, KEY)
    cache.open()
    assert not cache.wants(tokens(0, 400)) and cache.room() == 0
    cache.close()
    assert not folder.exists()


def test_the_files_are_private_to_their_user(tmp_path):
    folder = tmp_path / "prompt-cache" / "model-key"
    written(folder, tokens(0, 300)).close()
    assert folder.stat().st_mode & 0o777 == 0o700
    assert folder.parent.stat().st_mode & 0o777 == 0o700
    assert [path.stat().st_mode & 0o777 for path in folder.iterdir()] == [0o600]


def test_a_full_disk_loses_that_write_only(tmp_path, monkeypatch):
    real_write, calls = prompt_file.write, []

    def full_once(*args: object) -> int:
        calls.append(args)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        return real_write(*args)

    monkeypatch.setattr(prompt_file, "write", full_once)
    cache = opened(tmp_path)
    first, second = tokens(0, 300), tokens(1000, 300)
    assert cache.put(first, state(300)) and cache.put(second, state(300))
    cache.close()
    assert stored_prompts(tmp_path) == [second]
    assert cache.stats.failed_writes == 1
