"""Speculative decoding on the real engine: replies identical with speculation on and off
(greedy), and sampled replies keeping their limits. The pure parts (the drafter, the walk,
adapting) are tested in test_speculation.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hearth.engine import llama
from hearth.engine.base import Finished, GenerationRequest, Prompt, SamplingParams, TextDelta
from hearth.engine.grammar import schema_to_gbnf
from hearth.engine.llama import LlamaEngine
from hearth.engine.speculation import StepCost
from hearth.runtime.settings import ModelSettings, bundled_model_path

from .test_engine import GREEDY


@pytest.fixture(autouse=True)
def guesses_always_pay(monkeypatch):
    """These tests check what guessing does to replies, so every slot guesses whenever it
    can: how fast this machine's steps happen to be, and how many slots generate, must not
    decide it (the policy is tested in test_speculation.py). Slots guessing side by side
    cost more than they save with llama.cpp as the engine drives it, but their replies must
    be right all the same."""
    monkeypatch.setattr(StepCost, "break_even", lambda self, generating: 0.0)
    monkeypatch.setattr(llama, "step_budget", lambda generating, reading_prompt: 8)


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


def sampled_replies(sampling: SamplingParams) -> tuple[list, list]:
    """A rewrite cut by max_tokens and a list cut by a stop string, sampled, with
    speculation on and off; each reply checked to keep its limits."""

    async def scenario(engine: LlamaEngine) -> list:
        runs = [
            request(REWRITE, 30, sampling=sampling),
            request(LIST, 40, stop=(",",), sampling=sampling),
        ]
        return [await reply(engine, r) for r in runs]

    on, off = with_and_without(scenario, parallel=1)
    for replies in (on, off):
        (_, long, _), (short_text, short, _) = replies
        assert long.completion_tokens <= 30 and long.reason in ("stop", "length")
        assert short.completion_tokens <= 40 and "," not in short_text
    return on, off


def test_seeded_sampled_replies_never_guess_and_come_out_the_same():
    on, off = sampled_replies(SamplingParams(temperature=0.7, seed=3))
    # A seeded reply must come out the same on every run: it never guesses.
    assert all(finished.draft_tokens == 0 for _, finished, _ in on)
    assert [text for text, _, _ in on] == [text for text, _, _ in off]


def test_unseeded_sampled_replies_guess_and_keep_their_limits():
    on, _ = sampled_replies(SamplingParams(temperature=0.7))
    assert on[0][1].draft_tokens > 0  # the rewrite guessed while sampling
