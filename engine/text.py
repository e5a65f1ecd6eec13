"""Turning sampled token bytes into text a client may see.

Two things stand between a token and the wire. A token may end in the middle of a UTF-8
character (byte-level BPE vocabularies split emoji and CJK characters across tokens), so
bytes are decoded incrementally and only whole characters go out. And a stop sequence must
never reach the client, not even its first characters: text that could still grow into a
stop sequence is held back until it either completes one (and is dropped) or cannot.
"""

from __future__ import annotations

import codecs


def held_overlap(text: str, marker: str) -> int:
    """The length of the longest end of `text` that begins `marker` without being all of it:
    the characters to hold back, since what comes next may complete the marker (a stop
    sequence, a reasoning or tool-call tag, an inserted text)."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0


class Utf8Assembler:
    """Accumulates token bytes and returns only complete characters."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        return self._decoder.decode(piece, final=False)

    def flush(self) -> str:
        """At the end of generation: a truncated character becomes U+FFFD, not garbage."""
        return self._decoder.decode(b"", final=True)


class StopMatcher:
    """Finds stop sequences in streamed text, holding back possible beginnings of one."""

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.matched: str | None = None  # the stop sequence that was reached

    def feed(self, text: str) -> tuple[str, bool]:
        """Returns (text safe to emit now, whether a stop sequence was reached).

        When a stop is reached, the stop and everything after it are dropped; the caller
        should end the generation.
        """
        if not self._stops:
            return text, False
        buffer = self._pending + text
        hits = [(at, stop) for stop in self._stops if (at := buffer.find(stop)) >= 0]
        if hits:
            self._pending = ""
            at, self.matched = min(hits, key=lambda hit: hit[0])
            return buffer[:at], True
        hold = self._longest_partial_match(buffer)
        self._pending = buffer[len(buffer) - hold :]
        return buffer[: len(buffer) - hold], False

    def flush(self) -> str:
        """Generation ended without a stop: release what was held back."""
        pending, self._pending = self._pending, ""
        return pending

    def _longest_partial_match(self, buffer: str) -> int:
        return max((held_overlap(buffer, stop) for stop in self._stops), default=0)
