"""The prompt cache on disk: KV states of long prompts and finished turns, kept across
restarts and after the host-memory cache dropped them.

The scheduler thread copies a slot's state out of llama.cpp (the context is not
thread-safe) and hands it to `put`, which never blocks: a writer thread checksums and
writes it (engine/prompt_file.py). When the writer is behind by WRITE_BACKLOG_BYTES the
new state is dropped, not queued: a lost write costs one prompt read later, a blocked
scheduler costs every stream now.

The index (prompt tokens -> file) lives in memory, built at start from the files' heads
and tokens, never their payloads. Least recently used files go first when the folder is
over its bound; "used" is kept in the index and persisted as the file's mtime, which this
module sets itself (atime is unreliable: noatime and relatime mounts), so the order
survives a restart.

A file is superseded by a longer one that starts with all its tokens (the next turn of the
same conversation): every prompt the shorter one could serve, the longer serves as far.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hearth.engine import prompt_file
from hearth.engine.prompt_file import (
    CorruptPromptFile,
    ForeignPromptFile,
    Key,
    PromptFileError,
    PromptFileHead,
    token_bytes,
)

log = logging.getLogger(__name__)

# Below this many tokens a prompt is not written: reading it again costs about a second
# on a 2-core CPU, less than the disk traffic and the index entry are worth.
MIN_TOKENS_WORTH_STORING = 256
# A longer version of a prompt already on disk is written only when it adds this many
# tokens: each write copies the whole sequence (about 23 KB a token for SmolLM2-135M), and
# after a restart the few tokens of a short last turn are read again in a fraction of a
# second.
MIN_NEW_TOKENS_WORTH_STORING = 64
# States waiting for the writer, at most (one larger state is still taken when none wait).
WRITE_BACKLOG_BYTES = 256 << 20
# A temporary file this old is left from a write that died with its process.
STALE_TEMP_SECONDS = 600.0


@dataclass
class StoredPrompt:
    path: Path
    head: PromptFileHead
    last_used: float  # time.time(), persisted as the file's mtime

    @property
    def tokens(self) -> list[int]:
        return prompt_file.tokens_of(self.head.tokens)

    @property
    def n_tokens(self) -> int:
        return self.head.n_tokens

    @property
    def file_bytes(self) -> int:
        return self.head.file_bytes


@dataclass
class DiskCacheStats:
    hits: int = 0
    restored_tokens: int = 0
    writes: int = 0
    dropped_writes: int = 0  # the writer was behind
    failed_writes: int = 0  # disk full, permissions...
    removed_corrupt: int = 0
    evicted: int = 0


def shared_prefix(a: bytes, b: bytes) -> int:
    """Tokens two int32 token strings share from the start.

    Slices compare as memcmp, so a binary search over them takes microseconds where a
    Python loop over 4,000 tokens takes hundreds of them, on every admission."""
    n = min(len(a), len(b)) // 4
    if a[: 4 * n] == b[: 4 * n]:
        return n
    low, high = 0, n  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[: 4 * middle] == b[: 4 * middle]:
            low = middle
        else:
            high = middle
    return low


class DiskPromptCache:
    """One key's folder of prompt files, bounded by `budget` bytes (0: off, nothing on disk)."""

    def __init__(self, folder: Path | None, budget: int, key: Key) -> None:
        self.folder = folder
        self.budget = budget if folder is not None else 0
        self.key = key
        self.stats = DiskCacheStats()
        self._entries: dict[str, StoredPrompt] = {}
        self._pending: dict[bytes, int] = {}  # tokens -> state bytes, queued for the writer
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[bytes, bytearray] | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.budget > 0

    # ---- start and stop -----------------------------------------------------------------

    def open(self) -> None:
        """Index the folder (heads and tokens only) and start the writer; off on failure."""
        if not self.enabled:
            return
        assert self.folder is not None
        try:
            # Private: the files hold conversations (their tokens, and KV that encodes them).
            self.folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.folder.mkdir(mode=0o700, exist_ok=True)
            self._scan()
        except OSError as error:
            log.warning("prompt cache on disk is off: cannot use %s (%s)", self.folder, error)
            self.budget = 0
            return
        self._evict(keep=None)
        self._writer = threading.Thread(target=self._write_loop, name="hearth-kv-writer")
        self._writer.daemon = True
        self._writer.start()
        log.info(
            "prompt cache on disk: %d prompts, %d bytes in %s",
            len(self._entries),
            self.used,
            self.folder,
        )

    def close(self) -> None:
        """Write what is queued, then stop the writer (bounded by WRITE_BACKLOG_BYTES)."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None

    def _scan(self) -> None:
        assert self.folder is not None
        now = time.time()
        for path in self.folder.iterdir():
            try:
                if path.name.startswith(prompt_file.TEMP_PREFIX):
                    if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                        path.unlink(missing_ok=True)
                elif path.suffix == prompt_file.SUFFIX:
                    head = prompt_file.read_head(path, self.key)
                    self._entries[path.name] = StoredPrompt(path, head, path.stat().st_mtime)
            except ForeignPromptFile:
                continue  # another model's or build's; it may be valid for them
            except CorruptPromptFile as error:
                self._remove_corrupt(path, error)
            except OSError as error:  # renamed or removed meanwhile, or not ours to read
                log.info("prompt cache file %s skipped: %s", path.name, error)

    # ---- lookups (scheduler thread, and any thread) -------------------------------------

    @property
    def used(self) -> int:
        with self._lock:
            return sum(entry.file_bytes for entry in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def best_match(self, prompt: Sequence[int]) -> tuple[StoredPrompt | None, int]:
        """The file sharing the longest prefix with prompt, and that length; of files that
        share as much, the smallest (a system prompt many conversations open with is best
        loaded from the shortest of them: the whole file is read, then cut)."""
        if not self._entries:
            return None, 0
        wanted = token_bytes(prompt)
        best, best_len = None, 0
        with self._lock:
            for entry in self._entries.values():
                length = shared_prefix(entry.head.tokens, wanted)
                if length > best_len or (
                    best is not None and length == best_len and entry.file_bytes < best.file_bytes
                ):
                    best, best_len = entry, length
        return best, best_len

    def wants(self, tokens: Sequence[int]) -> bool:
        """Whether these tokens are worth a write: long enough, and not on disk (or queued)
        already, whole or all but a few tokens."""
        if not self.enabled or self._writer is None or len(tokens) < MIN_TOKENS_WORTH_STORING:
            return False
        raw = token_bytes(tokens)
        with self._lock:
            known = [entry.head.tokens for entry in self._entries.values()] + list(self._pending)
        for other in known:
            shared = shared_prefix(other, raw)
            if shared == len(tokens):
                self._touch_holder(other)  # it served these tokens again: recently used
                return False
            if shared * 4 == len(other) and len(tokens) - shared < MIN_NEW_TOKENS_WORTH_STORING:
                return False
        return True

    def room(self) -> int:
        """The largest state `put` would take now."""
        if not self.enabled:
            return 0
        with self._lock:
            queued = sum(self._pending.values())
        return self.budget if not queued else min(self.budget, WRITE_BACKLOG_BYTES - queued)

    def put(self, tokens: Sequence[int], state: bytearray) -> bool:
        """Queue a state (from LlamaModel.read_state) for writing; never blocks."""
        raw = token_bytes(tokens)
        if not state or len(state) > self.room() or self._writer is None:
            self.stats.dropped_writes += 1
            return False
        with self._lock:
            self._pending[raw] = len(state)
        self._queue.put((raw, state))
        return True

    def read(self, entry: StoredPrompt) -> bytearray | None:
        """A file's KV bytes, checked; None when it is gone or damaged (then deleted)."""
        try:
            payload = prompt_file.read_payload(entry.path, self.key, entry.head)
        except CorruptPromptFile as error:
            self._forget(entry)
            self._remove_corrupt(entry.path, error)
            return None
        except (ForeignPromptFile, OSError) as error:
            log.info("prompt cache file %s not used: %s", entry.path.name, error)
            self._forget(entry)
            return None
        self.touch(entry)
        return payload

    def touch(self, entry: StoredPrompt) -> None:
        entry.last_used = time.time()
        # Gone meanwhile (evicted by another process): the index still keeps its order.
        with contextlib.suppress(OSError):
            os.utime(entry.path, (entry.last_used, entry.last_used))

    def _touch_holder(self, tokens: bytes) -> None:
        with self._lock:
            holder = next((e for e in self._entries.values() if e.head.tokens == tokens), None)
        if holder is not None:
            self.touch(holder)

    def discard(self, entry: StoredPrompt, why: str) -> None:
        """Delete a file llama.cpp would not take."""
        log.warning("prompt cache file %s removed: %s", entry.path.name, why)
        self._forget(entry)
        entry.path.unlink(missing_ok=True)

    def report(self) -> dict[str, Any]:
        return {
            "disk_cache_entries": len(self._entries),
            "disk_cache_bytes": self.used,
            "disk_cache_hits": self.stats.hits,
            "disk_cache_restored_tokens": self.stats.restored_tokens,
            "disk_cache_writes": self.stats.writes,
            "disk_cache_dropped_writes": self.stats.dropped_writes,
            "disk_cache_removed_corrupt": self.stats.removed_corrupt,
        }

    # ---- the writer thread --------------------------------------------------------------

    def _write_loop(self) -> None:
        while (item := self._queue.get()) is not None:
            tokens, state = item
            try:
                self._store(tokens, state)
            except (OSError, PromptFileError) as error:
                self.stats.failed_writes += 1
                log.warning("prompt cache: cannot write a prompt state (%s)", error)
            finally:
                with self._lock:
                    self._pending.pop(tokens, None)

    def _store(self, tokens: bytes, state: bytearray) -> None:
        assert self.folder is not None
        name = prompt_file.token_digest(tokens) + prompt_file.SUFFIX
        path = self.folder / name
        size = prompt_file.write(path, self.key, tokens, state)
        head = prompt_file.read_head(path, self.key)  # what was written, as a reader sees it
        entry = StoredPrompt(path, head, os.stat(path).st_mtime)
        assert entry.file_bytes == size
        with self._lock:
            superseded = [
                other
                for other in self._entries.values()
                if other.path != path and tokens.startswith(other.head.tokens)
            ]
            for other in superseded:
                del self._entries[other.path.name]
            self._entries[name] = entry
        for other in superseded:
            other.path.unlink(missing_ok=True)
        self.stats.writes += 1
        self._evict(keep=name)

    def _evict(self, keep: str | None) -> None:
        """Delete least recently used files until the folder is within its bound."""
        while True:
            with self._lock:
                used = sum(entry.file_bytes for entry in self._entries.values())
                victims = [e for name, e in self._entries.items() if name != keep]
                if used <= self.budget or not victims:
                    return
                victim = min(victims, key=lambda entry: entry.last_used)
                del self._entries[victim.path.name]
            victim.path.unlink(missing_ok=True)
            self.stats.evicted += 1

    def _forget(self, entry: StoredPrompt) -> None:
        with self._lock:
            if self._entries.get(entry.path.name) is entry:
                del self._entries[entry.path.name]

    def _remove_corrupt(self, path: Path, error: Exception) -> None:
        log.warning("prompt cache file %s is damaged (%s); deleted", path.name, error)
        path.unlink(missing_ok=True)
        self.stats.removed_corrupt += 1
