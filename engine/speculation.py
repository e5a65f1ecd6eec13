"""Speculative decoding without a draft model: drafts from the request's own context.

A reply that copies its prompt (a code edit, a summary quoting its source, an extraction)
repeats runs of tokens the context already holds. When the last few tokens of a slot's
context occurred earlier, the tokens that followed them then are a good guess for what
follows now (prompt lookup, or n-gram speculation). The scheduler puts the slot's next
token and that guess into the same llama_decode as every other slot's token, with logits
for each of those rows, and then walks the rows: at row j it samples a token exactly as it
would without speculation (the job's own sampler chain, grammar, penalties, stop strings);
if that token is the guess's (j+1)-th, the guess was right so far and row j+1 holds the
logits that come next; else the sampled token is the slot's next token and the rest of the
guess is dropped from the KV cache.

Why this is lossless at any temperature, not only greedy: a draft here is one proposed
token per position, a point mass. Speculative sampling with a draft distribution q and a
target p accepts a drafted x with probability min(1, p(x)/q(x)) and otherwise resamples
from max(0, p - q). With q the point mass on d: d is accepted with probability p(d), and
the residual max(0, p - q) is p with d removed, renormalized. "Draw x from p; accept iff
x == d; else x is the token" gives d with probability p(d) and any other x with
probability p(x): the same distribution, drawn with one sample instead of two. Each
accepted row's sample is the token the plain path would have drawn from the same logits,
so every output token has exactly the target probability given the ones before it.

Speculation costs decode work (each guessed token is evaluated whether or not it is kept)
and pays only when guesses are taken often enough for what a row costs on this machine
(StepCost measures it), so each job adapts its guess length to how often its guesses are
right and parks itself when they mostly are not; and only a slot generating alone guesses
(step_budget says why; measured elsewhere too: n-gram speculation slows eight concurrent
streams, llama.cpp PR #6828).

The drafter is behind a small protocol so that another (a draft model) can plug in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

# A step decodes at most this many rows of its one generating slot (its next token and its
# guess). k guessed tokens, all taken, give k + 1 tokens for the time of 1 + c * k one-token
# steps, c being a row's share of a step, which levels off near 1 / c; and a long guess is
# more often cut short. On a 2-core CPU c is about 0.35 (llama-bench at 700 tokens of
# context: 12 ms a step of 1 row, 50 of 8, 68 of 12, 87 of 16), so a copy still gains from
# rows 9 to 16; on a GPU c is near 0.
STEP_ROWS = 16

# A job whose guesses are taken less often than its break-even share, on average, stops
# guessing for a while: below it the rows spent on guesses cost more than the tokens they
# save. The share is measured (StepCost); this is it until there are figures to go on.
MIN_ACCEPTANCE = 0.35

# Where the measured break-even is at least this, nothing is guessed: even guesses taken
# nearly always would not pay for their rows. Every PROBE_STEPS steps without a guessed row
# the measure is forgotten for one step, so that guessing is tried again (the machine's
# load, or the contexts' lengths, may have changed what a row costs).
NO_GAIN = 0.9
PROBE_STEPS = 256

# Parking: the first pause lasts this many generated tokens, each further one twice the
# last, up to PARK_MAX_TOKENS; then the job tries again with a short guess.
PARK_TOKENS = 16
PARK_MAX_TOKENS = 256
FIRST_LENGTH = 4


class Drafter(Protocol):
    """Guesses the tokens that follow a context. One per generating job, fed its context
    (the prompt and the reply so far, exactly what the slot's KV holds) on every call."""

    def propose(self, context: Sequence[int], limit: int) -> list[int]: ...


class NgramDrafter:
    """Guesses by the most recent earlier occurrence of the context's last n tokens, and
    then by following that occurrence for as long as the context keeps copying it.

    The longest suffix that occurred before wins (n from max_n down to min_n): a longer
    match is more likely to continue the same way. The index maps each n-gram to the
    position just after its most recent occurrence and is updated with the tokens added
    since the last call, so a call costs a few dictionary operations per new token, never
    a scan of the whole context. (The first call indexes the prompt: about 5 ms for 4,000
    tokens.) A context only grows within a job; one that shrank is indexed afresh.

    Once a guess came from some earlier place (its source) and the tokens written since
    are the source's own next tokens, the next guess goes on from where that copy has got
    to, without a new lookup. A reply copying its prompt repeats short n-grams (`self.`,
    `return self.items[`) that occur in many places; the most recent occurrence of four
    tokens is often the wrong place to go on from, and the copy being followed is the
    right one. It took bench/speculation_bench.py's copy from 128 to 165 tok/s.
    """

    def __init__(self, max_n: int = 4, min_n: int = 3) -> None:
        self._sizes = range(max_n, min_n - 1, -1)
        self._after: dict[tuple[int, ...], int] = {}
        self._indexed = 0  # the n-grams followed by positions below this one are known
        # Where the last guess came from, and the context's length then: the copy in
        # progress, if the tokens written since followed it.
        self._source: int | None = None
        self._source_at = 0

    def propose(self, context: Sequence[int], limit: int) -> list[int]:
        self._index(context)
        start = self._following(context)
        if start is None:
            start = self.lookup(context)
        self._source, self._source_at = start, len(context)
        return [] if start is None else list(context[start : start + limit])

    def lookup(self, context: Sequence[int]) -> int | None:
        """Where the context's longest known suffix last continued (indexed contexts)."""
        end = len(context)
        for n in self._sizes:
            if n <= end:
                follows = self._after.get(tuple(context[end - n : end]))
                if follows is not None:
                    return follows
        return None

    def _following(self, context: Sequence[int]) -> int | None:
        """Where the copy the last guess came from has got to, if the context followed it."""
        source, written = self._source, len(context) - self._source_at
        if source is None or written < 0:
            return None
        # (A source lies before the context's end then, so it still does now.)
        if any(context[source + i] != context[self._source_at + i] for i in range(written)):
            return None
        return source + written

    def _index(self, context: Sequence[int]) -> None:
        if len(context) < self._indexed:
            self._after.clear()
            self._indexed = 0
            self._source = None
        # An n-gram is indexed once the token after it is known: the context's own final
        # suffix is not, so a lookup finds only earlier occurrences.
        for follower in range(max(self._indexed, 1), len(context)):
            for n in self._sizes:
                if n <= follower:
                    self._after[tuple(context[follower - n : follower])] = follower
        self._indexed = max(self._indexed, len(context))


# Drafters that need nothing but the context, by name. A draft model's drafter
# (engine/draft_model.ModelDrafter) is made by the engine, which holds the loaded model.
DRAFTERS: dict[str, Callable[[], Drafter]] = {"ngram": NgramDrafter}


@dataclass
class Speculation:
    """One job's drafter and how well its guesses have done.

    The guess length doubles while guesses are taken whole and falls to one past the part
    taken when they are not. `rate` is a moving average of the share of guessed tokens
    taken; below MIN_ACCEPTANCE the job parks (guesses nothing) for a while, and the pause
    doubles each time it parks again.
    """

    drafter: Drafter
    max_length: int
    length: int = FIRST_LENGTH
    rate: float = 1.0
    parked_until: int = 0  # the job's generated count from which it may guess again
    pause: int = PARK_TOKENS
    drafted: int = 0
    accepted: int = 0

    def __post_init__(self) -> None:
        self.length = min(self.length, self.max_length)

    def wanted(self, generated: int) -> int:
        return 0 if generated < self.parked_until else self.length

    def record(
        self, drafted: int, accepted: int, generated: int, floor: float = MIN_ACCEPTANCE
    ) -> None:
        """Adapt to one step's outcome; `floor` is the share of guesses that must be taken
        for guessing to pay (StepCost.break_even). (The counts `drafted` and `accepted` are
        kept by the scheduler as tokens are guessed and taken: a reply may end mid-walk.)"""
        if drafted == 0:
            return
        self.rate = 0.7 * self.rate + 0.3 * (accepted / drafted)
        if accepted == drafted:
            self.length = min(self.max_length, 2 * self.length)
        else:
            self.length = max(1, accepted + 1)
        if self.rate < floor:
            self.parked_until = generated + self.pause
            self.pause = min(PARK_MAX_TOKENS, 2 * self.pause)
            self.rate = floor + 0.2  # a try that misses once may go on; twice, parks
            self.length = 1


class StepCost:
    """What a decode step of generating slots costs by its rows, and so when guessing pays.

    A step of `g` generating slots takes t(g); each guessed row adds about `slope`, the
    measured marginal cost of a row. A guessed token taken saves its slot one row of a
    step that costs t(g) / g per token, so guessing pays when the share of guesses taken
    exceeds slope * g / t(g). On a GPU a few more rows cost almost nothing and the share
    is near 0; on a small CPU a row costs about half of a one-token step, and with four
    streams in the batch a guess must be taken about 80% of the time to pay. Each row
    count keeps a moving average of its steps' seconds; the slope is read between the
    slots' own row count and the counts with guesses seen since.
    """

    def __init__(self) -> None:
        self._seconds: dict[int, float] = {}
        self._unguessed_steps = 0

    def record(self, rows: int, generating: int, seconds: float) -> None:
        """A step that decoded only generating slots' rows (no prompt) took `seconds`."""
        known = self._seconds.get(rows)
        self._seconds[rows] = seconds if known is None else 0.9 * known + 0.1 * seconds
        self._unguessed_steps = 0 if rows > generating else self._unguessed_steps + 1

    def seconds(self, rows: int) -> float:
        """The moving average of a step of `rows` generating rows (0 when none was seen)."""
        return self._seconds.get(rows, 0.0)

    @property
    def probing(self) -> bool:
        """Whether the measure is forgotten this step, so that guessing is tried again."""
        return self._unguessed_steps >= PROBE_STEPS

    def break_even(self, generating: int) -> float:
        """The share of guessed tokens that must be taken for guesses to pay."""
        base = self._seconds.get(generating)
        wider = [rows for rows in self._seconds if rows > generating]
        if not base or not wider or self.probing:
            return MIN_ACCEPTANCE
        slopes = sorted((self._seconds[rows] - base) / (rows - generating) for rows in wider)
        slope = max(0.0, slopes[len(slopes) // 2])
        return min(1.0, slope * generating / base)


def step_budget(generating: int, reading_prompt: bool) -> int:
    """Guessed tokens a step may decode, over all its slots.

    Only a slot generating alone guesses. Each slot has a KV stream of its own
    (kv_unified off, engine/model.py), and llama.cpp then splits a batch into ubatches
    that hold the same number of tokens of each sequence, sequences with consecutive ids
    only (llama_batch_allocr::split_equal): a guess for one slot beside others makes its
    extra rows a ubatch of their own, a whole pass over the weights more, and on a CPU that
    step cost as much as two. A prompt being read is split the same way, and its step is
    long already.
    """
    if reading_prompt or generating != 1:
        return 0
    return STEP_ROWS - 1


def verify(
    draft: Sequence[int], emit: Callable[[int], int | None], go_on: Callable[[], bool]
) -> tuple[int, int | None]:
    """Walk the rows of one slot's step: row 0 follows its next token, row j + 1 its
    guess's j-th token.

    `emit(j)` samples row j through the job's ordinary per-token path (and returns the
    token, or None when that token ended the generation). A token equal to the guess's
    next one is taken and the walk goes on to the following row; any other token is the
    slot's next token and ends the walk. Returns how many guessed tokens were taken and
    the next token (None once the generation ended). `go_on()` false (a cancel) ends the
    walk at the token just emitted, which then waits as the next token.
    """
    for j in range(len(draft) + 1):
        token = emit(j)
        if token is None:
            return j, None
        if j == len(draft) or token != draft[j] or not go_on():
            return j, token
    raise AssertionError("unreachable")
