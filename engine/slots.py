"""Slots (one KV sequence each) and the host-memory cache of evicted sequences.

A slot keeps the tokens whose keys and values sit in its KV sequence after its request
ends: the next request that starts with the same tokens (the next turn of the same
conversation, or another request with the same system prompt) only evaluates what is new.
When every slot is taken by other conversations, a slot's sequence can be saved to host
memory and restored later, so more conversations than slots keep their prefixes warm.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hearth.engine.base import GenerationRequest, TokenLogprob
from hearth.engine.sampler import SamplerChain
from hearth.engine.speculation import Speculation
from hearth.engine.stream import GenerationStream
from hearth.engine.text import StopMatcher, Utf8Assembler

if TYPE_CHECKING:
    from hearth.engine.model import LlamaModel


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Job:
    """An admitted request and its generation state, owned by the scheduler thread."""

    request: GenerationRequest
    prompt: list[int]
    stream: GenerationStream
    max_new_tokens: int
    sampler: SamplerChain | None = None
    utf8: Utf8Assembler = field(default_factory=Utf8Assembler)
    stops: StopMatcher | None = None
    cached_tokens: int = 0
    generated: int = 0
    # Log probabilities of tokens whose text has not gone out yet (see TextDelta).
    logprobs: list[TokenLogprob] = field(default_factory=list)
    # The other choices of an n > 1 request. They wait here, not in the queue, until this
    # job has read the prompt; then they start from a copy of its KV (Slot donors), so the
    # prompt is read once for all n.
    followers: list[Job] = field(default_factory=list)
    # A lazy grammar's watch: the text tail in which its trigger may be starting; None when
    # nothing is watched (no trigger, or the grammar has taken over).
    trigger_tail: str | None = None
    # While an insert waits: the reply's last characters (as many as the texts it looks
    # for), and its opening (for the insert's `requires`). None once decided.
    insert_watch: str | None = None
    insert_head: str = ""
    forced: list[int] = field(default_factory=list)  # an insert's tokens still to write
    # A suspended batch line (see LlamaEngine._suspend): the tokens its slot must hold
    # again before it goes on, its prompt, what it generated and its sampled, not yet
    # evaluated token. None for a job that is not waiting to resume.
    resume: list[int] | None = None
    # Its guesses and how they fare (engine/speculation.py); None until it first may guess.
    speculation: Speculation | None = None


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what this KV sequence holds, in order
    job: Job | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens not yet evaluated
    next_token: int | None = None  # sampled, to be evaluated in the next step
    output_index: int = -1  # batch row of this slot's logits in the current step
    # Guessed tokens decoded after next_token in the current step, each with logits (the
    # rows after output_index); those not confirmed leave the KV after the step.
    draft: list[int] = field(default_factory=list)
    last_used: float = field(default_factory=time.monotonic)

    @property
    def busy(self) -> bool:
        return self.job is not None


@dataclass(frozen=True)
class SavedSequence:
    tokens: tuple[int, ...]
    state: bytearray  # LlamaModel.read_state


class HostCache:
    """Evicted KV sequences in host memory, least recently used dropped first."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget = budget_bytes
        self.used = 0
        self._entries: OrderedDict[tuple[int, ...], SavedSequence] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def save(self, model: LlamaModel, slot: Slot) -> bool:
        state = model.read_state(slot.seq_id, limit=self.budget)
        if not state:
            return False
        key = tuple(slot.tokens)
        self._drop(key)
        while self.used + len(state) > self.budget and self._entries:
            self._drop(next(iter(self._entries)))
        self._entries[key] = SavedSequence(key, state)
        self.used += len(state)
        return True

    def best_match(self, prompt: Sequence[int]) -> tuple[SavedSequence | None, int]:
        best, best_len = None, 0
        for entry in self._entries.values():
            length = common_prefix(entry.tokens, prompt)
            if length > best_len:
                best, best_len = entry, length
        return best, best_len

    def take(self, entry: SavedSequence) -> bytearray:
        """An entry's state, out of the cache: once restored, its slot holds it."""
        self._drop(entry.tokens)
        return entry.state

    def _drop(self, key: tuple[int, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.used -= len(entry.state)
