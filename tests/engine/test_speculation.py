"""Speculative decoding's pure parts: the n-gram drafter, the accept/reject walk (and the
distribution it keeps), and adapting to what guesses cost. The real engine's replies with
speculation on and off are compared in test_speculation_engine.py."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest

from hearth.engine.speculation import (
    MIN_ACCEPTANCE,
    PROBE_STEPS,
    STEP_ROWS,
    NgramDrafter,
    Speculation,
    StepCost,
    step_budget,
    verify,
)
from hearth.runtime.library import ModelLibrary
from hearth.runtime.settings import ModelSettings, bundled_model_path

# ---- the drafter --------------------------------------------------------------------------


def test_the_drafter_proposes_what_followed_the_most_recent_earlier_occurrence():
    drafter = NgramDrafter(max_n=3, min_n=1)
    context = [1, 2, 3, 9, 1, 2, 3, 7, 8, 5, 1, 2, 3]
    assert drafter.propose(context, 3) == [7, 8, 5]  # the later "1 2 3", not the first
    assert drafter.propose([*context, 7], 2) == [8, 5]
    assert drafter.propose([4, 6, 4], 3) == [6, 4]  # a context that shrank is indexed again


def test_the_longest_matching_suffix_wins():
    drafter = NgramDrafter(max_n=3, min_n=1)
    # "3" alone was last followed by 4, but "2 3" only by 5.
    assert drafter.propose([2, 3, 5, 6, 3, 4, 2, 3], 2) == [5, 6]


def test_nothing_is_proposed_without_an_earlier_occurrence():
    drafter = NgramDrafter(max_n=4, min_n=2)
    assert drafter.propose([1, 2, 3, 4, 5], 4) == []
    assert drafter.propose([7], 4) == []


def test_an_index_fed_token_by_token_finds_what_a_fresh_one_does():
    rng = random.Random(7)
    context = [rng.randrange(6) for _ in range(400)]
    growing = NgramDrafter()
    for end in range(1, len(context) + 1):
        growing.propose(context[:end], 5)
        fresh = NgramDrafter()
        fresh.propose(context[:end], 5)
        assert growing.lookup(context[:end]) == fresh.lookup(context[:end])


# A file's first copy, then "3 4" followed by 9 elsewhere, then the copy starting again.
COPIED = [1, 2, 3, 4, 5, 6, 7, 3, 4, 9, 1, 2]


def test_a_guess_goes_on_from_the_copy_the_last_one_came_from():
    follower = NgramDrafter(max_n=2, min_n=1)
    assert follower.propose(COPIED, 1) == [3]
    # The guess was taken and the model wrote 4: the copy of positions 2-3 goes on at 5,
    # where a lookup of "3 4" alone finds its most recent occurrence, followed by 9.
    context = [*COPIED, 3, 4]
    assert follower.propose(context, 2) == [5, 6]
    assert NgramDrafter(max_n=2, min_n=1).propose(context, 2) == [9, 1]


def test_a_context_that_leaves_the_copy_is_looked_up_afresh():
    follower = NgramDrafter(max_n=2, min_n=1)
    follower.propose(COPIED, 1)
    follower.propose([*COPIED, 3, 4], 2)
    # 5 was taken, 6 was not: the model wrote 7, and "5 7" is new, so "7" is looked up.
    left = [*COPIED, 3, 4, 5, 7]
    assert follower.propose(left, 2) == NgramDrafter(max_n=2, min_n=1).propose(left, 2) == [3, 4]


# ---- the accept/reject walk ---------------------------------------------------------------


def walk(draft: Sequence[int], sampled: Sequence[int | None], cancel_after: int = 99):
    """verify() over rows whose sampler returns `sampled` in turn; also the rows it read."""
    rows: list[int] = []

    def emit(row: int) -> int | None:
        rows.append(row)
        return sampled[row]

    taken, next_token = verify(draft, emit, lambda: len(rows) < cancel_after)
    return taken, next_token, rows


def test_the_walk_takes_the_agreeing_prefix_and_the_first_other_token_is_next():
    assert walk([5, 6, 7], [5, 6, 9, 0]) == (2, 9, [0, 1, 2])
    assert walk([5, 6, 7], [1, 0, 0, 0]) == (0, 1, [0])


def test_a_guess_taken_whole_samples_one_more_token_from_the_last_row():
    assert walk([5, 6], [5, 6, 8]) == (2, 8, [0, 1, 2])


def test_a_generation_ending_mid_guess_ends_the_walk():
    # None: the token ended the reply (EOS, a stop string, max_tokens).
    assert walk([5, 6, 7], [5, None, 7, 0]) == (1, None, [0, 1])


def test_a_cancel_ends_the_walk_at_the_token_just_taken():
    assert walk([5, 6, 7], [5, 6, 7, 0], cancel_after=2) == (1, 6, [0, 1])


def test_the_walk_keeps_the_output_distribution_of_plain_sampling():
    """Sampling each row and taking a guessed token only when the draw equals it gives each
    token with the model's own probability: the first 3 tokens of a 3-token Markov chain,
    generated through guesses that are right about half the time, come out with the
    chain's exact probabilities."""
    chain = {0: (0.6, 0.3, 0.1), 1: (0.2, 0.5, 0.3), 2: (0.1, 0.1, 0.8)}
    rng = random.Random(1234)

    def draw(previous: int) -> int:
        return rng.choices((0, 1, 2), chain[previous])[0]

    def generate() -> tuple[int, ...]:
        out = [0]  # the prompt's last token
        while len(out) < 4:
            draft = [rng.randrange(3) for _ in range(3)]  # any guess, right or not
            context = list(out)

            def emit(
                row: int, context: list[int] = context, draft: list[int] = draft
            ) -> int | None:
                # Row j follows the context and the guess's first j tokens.
                token = draw(([*context, *draft][: len(context) + row])[-1])
                out.append(token)
                return None if len(out) == 4 else token

            verify(draft, emit, lambda: True)
        return tuple(out[1:])

    runs = 30_000
    counts = Counter(generate() for _ in range(runs))
    for sequence, seen in counts.items():
        expected, previous = 1.0, 0
        for token in sequence:
            expected *= chain[previous][token]
            previous = token
        assert abs(seen / runs - expected) < 0.01, (sequence, seen / runs, expected)


# ---- adapting -----------------------------------------------------------------------------


def test_the_guess_grows_while_taken_whole_and_shrinks_after_a_miss():
    state = Speculation(NgramDrafter(), max_length=8)
    assert state.wanted(0) == 4
    state.record(4, 4, generated=5)
    assert state.wanted(5) == 8
    state.record(8, 8, generated=14)
    assert state.wanted(14) == 8  # at most max_length
    state.record(8, 2, generated=17)
    assert state.wanted(17) == 3  # one past what was taken


def test_a_job_whose_guesses_fail_parks_and_tries_again_later():
    state = Speculation(NgramDrafter(), max_length=8)
    generated = 0
    while state.wanted(generated):
        generated += 1
        state.record(state.wanted(generated), 0, generated)
    assert state.rate > MIN_ACCEPTANCE
    parked_at = generated
    assert state.wanted(parked_at + 15) == 0
    assert state.wanted(parked_at + 16) == 1  # tried again, with one token
    state.record(1, 0, parked_at + 16)
    state.record(1, 0, parked_at + 17)
    assert state.wanted(parked_at + 17 + 31) == 0  # parked again, twice as long
    assert state.wanted(parked_at + 17 + 32) == 1


def test_guessing_pays_when_taken_more_often_than_a_row_costs_against_a_token():
    cost = StepCost()
    assert cost.break_even(1) == MIN_ACCEPTANCE  # nothing measured yet
    # A CPU: one row 8 ms, each further row 4 ms more.
    for rows in (1, 2, 5, 4):
        for _ in range(30):
            cost.record(rows, 1, 0.004 + 0.004 * rows)
    assert cost.break_even(1) == pytest.approx(0.5)
    assert cost.break_even(4) == pytest.approx(0.8)  # four streams: a guess must nearly always hold
    gpu = StepCost()
    for rows in (1, 3, 8):
        gpu.record(rows, 1, 0.010 + 0.0001 * rows)
    assert gpu.break_even(1) < 0.02


def test_guessing_is_tried_again_after_many_steps_without_it():
    cost = StepCost()
    cost.record(2, 1, 0.02)  # a guessed row cost as much as a whole step
    for _ in range(PROBE_STEPS - 1):
        cost.record(1, 1, 0.01)
    assert cost.break_even(1) == pytest.approx(1.0)
    cost.record(1, 1, 0.01)
    assert cost.break_even(1) == MIN_ACCEPTANCE  # forgotten for a probe
    cost.record(2, 1, 0.02)
    assert cost.break_even(1) == pytest.approx(1.0)


def test_a_job_below_the_break_even_share_parks():
    state = Speculation(NgramDrafter(), max_length=4)
    state.record(4, 3, generated=1, floor=0.8)  # 75% taken, moving average 0.93
    state.record(4, 3, generated=2, floor=0.8)  # 0.88
    assert state.wanted(3) > 0
    state.record(4, 2, generated=3, floor=0.8)  # 0.76: below
    assert state.wanted(4) == 0


def test_only_a_slot_generating_alone_guesses():
    assert step_budget(1, reading_prompt=False) == STEP_ROWS - 1
    assert step_budget(2, reading_prompt=False) == 0
    assert step_budget(1, reading_prompt=True) == 0


def test_speculation_is_set_per_model_in_the_config_file(tmp_path):
    config = tmp_path / "hearth.toml"
    config.write_text(
        f'models_dir = "{tmp_path}"\ndraft_max = 4\n'
        f'[[models]]\nid = "plain"\npath = "{bundled_model_path()}"\nspeculate = false\n'
    )
    library = ModelLibrary.scan(ModelSettings.load({}, config))
    plain, bundled = library.get("plain"), library.get("smollm2")
    assert plain is not None and bundled is not None
    options = plain.settings.engine_options(bundled_model_path(), "plain")
    assert (options.speculate, options.draft_max) == (False, 4)
    options = bundled.settings.engine_options(bundled_model_path(), "smollm2")
    assert (options.speculate, options.draft_max) == (True, 4)
