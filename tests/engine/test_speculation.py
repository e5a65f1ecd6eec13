"""Speculative decoding: the n-gram drafter and the accept/reject walk as pure functions,
and the real engine giving the same replies with speculation on and off."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Callable, Sequence

import pytest

from hearth.engine.base import Finished, GenerationRequest, Prompt, SamplingParams, TextDelta
from hearth.engine.grammar import schema_to_gbnf
from hearth.engine.llama import LlamaEngine
from hearth.engine.speculation import (
    MIN_ACCEPTANCE,
    STEP_ROWS,
    NgramDrafter,
    Speculation,
    step_budget,
    verify,
)
from hearth.runtime.settings import ModelSettings, bundled_model_path

from .test_engine import GREEDY

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


def test_an_index_fed_token_by_token_proposes_what_a_fresh_one_does():
    rng = random.Random(7)
    context = [rng.randrange(6) for _ in range(400)]
    growing = NgramDrafter()
    for end in range(1, len(context) + 1):
        assert growing.propose(context[:end], 5) == NgramDrafter().propose(context[:end], 5)


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


def test_a_crowded_step_guesses_nothing():
    assert step_budget(1, reading_prompt=False) == STEP_ROWS - 1
    assert step_budget(STEP_ROWS, reading_prompt=False) == 0
    assert step_budget(1, reading_prompt=True) == 0


# ---- the real engine ----------------------------------------------------------------------

CODE = "\n".join(f"def scale_{i}(value):\n    return value * {i} + {i + 3}" for i in range(10))
# Short: prompts that shared 16 tokens would copy that prefix from whichever slot read it
# first (LlamaEngine._best_donor), and KV read in a batch of another shape can turn a close
# greedy pick; which slot reads first depends on thread timing, with speculation or not.
SYSTEM = "<|im_start|>system\nYou are helpful.<|im_end|>\n"


def chat(user: str) -> str:
    return f"{SYSTEM}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


REWRITE = chat(f"Rewrite this code with value renamed to x:\n{CODE}")  # copied: guesses pay
FREE = chat("Write a short story about a lighthouse.")
LIST = chat("Repeat this list: apples, pears, plums, cherries, apples, pears, plums, cherries.")
SPELLING = chat("Fix the spelling: The quick brown fox jumpd over the lazy dog. " * 2)


def request(text: str, max_tokens: int = 40, **fields: object) -> GenerationRequest:
    fields.setdefault("sampling", GREEDY)
    return GenerationRequest(Prompt(text, parse_special=True), max_tokens=max_tokens, **fields)


async def reply(engine: LlamaEngine, req: GenerationRequest) -> tuple[str, Finished, list]:
    parts, logprobs, finished = [], [], None
    async for event in engine.submit(req):
        if isinstance(event, TextDelta):
            parts.append(event.text)
            logprobs.extend(event.logprobs)
        else:
            finished = event
    assert finished is not None
    return "".join(parts), finished, logprobs


Scenario = Callable[[LlamaEngine], object]


def with_and_without(scenario: Scenario, parallel: int = 4) -> tuple[object, object]:
    """The scenario's result on an engine that speculates and on one that does not."""

    async def on(speculate: bool) -> object:
        settings = ModelSettings.load(
            {"parallel": parallel, "n_ctx": 1024, "threads": 1, "speculate": speculate}
        )
        engine = LlamaEngine(settings.engine_options(bundled_model_path(), "smollm2"))
        await engine.start()
        try:
            return await scenario(engine)
        finally:
            await engine.close()

    return asyncio.run(on(True)), asyncio.run(on(False))


def test_greedy_replies_are_identical_with_speculation_on_and_off_across_four_slots():
    prompts = [REWRITE, FREE, LIST, SPELLING]

    async def scenario(engine: LlamaEngine) -> list:
        replies = await asyncio.gather(*(reply(engine, request(p, 32)) for p in prompts))
        return [(text, f.completion_tokens, f.accepted_draft_tokens) for text, f, _ in replies]

    on, off = with_and_without(scenario)
    assert [r[:2] for r in on] == [r[:2] for r in off]
    assert on[0][2] > 0  # the rewrite's guesses were taken: speculation did run
    assert all(r[2] == 0 for r in off)


def test_a_lone_rewrite_is_identical_and_mostly_guessed():
    async def scenario(engine: LlamaEngine) -> tuple:
        text, finished, _ = await reply(engine, request(REWRITE, 64))
        return text, finished, engine.stats.as_dict()

    (text, finished, stats), (plain, plain_finished, plain_stats) = with_and_without(scenario)
    assert text == plain and finished.completion_tokens == plain_finished.completion_tokens
    assert finished.accepted_draft_tokens > 0
    assert finished.draft_tokens >= finished.accepted_draft_tokens
    assert stats["accepted_draft_tokens"] == finished.accepted_draft_tokens
    assert stats["steps"] < plain_stats["steps"]  # guessed tokens saved decode steps
    assert plain_stats["draft_tokens"] == 0


@pytest.mark.parametrize("max_tokens", [7, 23])
def test_max_tokens_is_exact_with_speculation(max_tokens):
    async def scenario(engine: LlamaEngine) -> tuple:
        text, finished, _ = await reply(engine, request(REWRITE, max_tokens))
        return text, finished.completion_tokens, finished.reason

    on, off = with_and_without(scenario, parallel=1)
    assert on == off and on[1:] == (max_tokens, "length")


def test_a_stop_string_inside_a_guess_ends_the_reply_as_without_speculation():
    async def scenario(engine: LlamaEngine) -> tuple:
        text, finished, _ = await reply(engine, request(REWRITE, 64, stop=("scale_2",)))
        return text, finished.reason, finished.stop_sequence, finished.completion_tokens

    on, off = with_and_without(scenario, parallel=1)
    assert on == off and on[1:3] == ("stop", "scale_2") and "scale_2" not in on[0]


def test_logprobs_are_the_same_with_speculation():
    async def scenario(engine: LlamaEngine) -> tuple:
        text, finished, logprobs = await reply(engine, request(REWRITE, 32, logprobs=3))
        return text, finished.accepted_draft_tokens, logprobs

    (text, taken, on), (plain, _, off) = with_and_without(scenario, parallel=1)
    assert text == plain and taken > 0 and len(on) == len(off) == 32
    for mine, theirs in zip(on, off, strict=True):
        assert mine.piece == theirs.piece
        assert mine.logprob == pytest.approx(theirs.logprob, abs=1e-3)
        assert [p for p, _ in mine.top] == [p for p, _ in theirs.top]


def test_a_json_schema_grammar_reply_is_identical_with_speculation():
    schema = {
        "type": "object",
        "properties": {"fruits": {"type": "array", "items": {"type": "string"}}},
        "required": ["fruits"],
    }
    grammar = schema_to_gbnf(schema)

    async def scenario(engine: LlamaEngine) -> tuple:
        text, finished, _ = await reply(engine, request(LIST, 48, grammar=grammar))
        return text, finished.completion_tokens

    on, off = with_and_without(scenario, parallel=1)
    assert on == off and on[0].startswith("{")


def test_choices_of_one_request_are_identical_with_speculation():
    async def scenario(engine: LlamaEngine) -> list:
        texts = []
        for stream in engine.submit_choices(request(REWRITE, 32), 2):
            parts = [e.text async for e in stream if isinstance(e, TextDelta)]
            texts.append("".join(parts))
        return texts

    on, off = with_and_without(scenario)
    assert on == off and on[0] == on[1]


def test_sampled_replies_keep_max_tokens_and_stop_with_speculation():
    sampled = SamplingParams(temperature=0.7, seed=3)

    async def scenario(engine: LlamaEngine) -> list:
        runs = [
            request(REWRITE, 30, sampling=sampled),
            request(LIST, 40, stop=(",",), sampling=sampled),
        ]
        return [await reply(engine, r) for r in runs]

    on, _ = with_and_without(scenario, parallel=1)
    (_, long, _), (short_text, short, _) = on
    assert long.completion_tokens <= 30 and long.reason in ("stop", "length")
    assert short.completion_tokens <= 40 and "," not in short_text
