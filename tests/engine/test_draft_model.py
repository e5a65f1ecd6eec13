"""The draft model on its own, on real models: what it proposes and what it refuses.

The engine's verification of drafts (greedy output unchanged with a draft model on) is
tested with the speculation tests; these check the draft model's side of the bargain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import llama_cpp
import pytest

from hearth.engine import llama
from hearth.engine.base import (
    EngineOptions,
    Finished,
    GenerationRequest,
    Prompt,
    SamplingParams,
    TextDelta,
)
from hearth.engine.batch import TokenBatch
from hearth.engine.draft_model import CATCH_UP_PER_STEP, DraftModel, DraftModelMismatch
from hearth.engine.llama import LlamaEngine
from hearth.engine.logits import LogitsRows
from hearth.engine.model import LlamaModel
from hearth.engine.speculation import StepCost
from hearth.runtime.settings import ModelSettings, bundled_model_path
from tests.conftest import GEMMA

PROMPT = (
    "<|im_start|>user\nCount from one to thirty, in words, separated by commas."
    "<|im_end|>\n<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def target() -> Iterator[LlamaModel]:
    model = LlamaModel(
        EngineOptions(path=bundled_model_path(), name="smollm2", n_ctx=1024, n_seq=2, threads=2)
    )
    yield model
    model.close()


@pytest.fixture(scope="module")
def draft(target: LlamaModel) -> Iterator[DraftModel]:
    # The target's own file as its draft: every token it proposes must be the target's
    # greedy choice, which makes the proposals checkable exactly.
    model = DraftModel(bundled_model_path(), target, target.options)
    yield model
    model.close()


def greedy_continuation(model: LlamaModel, context: list[int], count: int) -> list[int]:
    """The target's own greedy next tokens, one decode at a time, in its sequence 1."""
    llama_cpp.llama_memory_seq_rm(model.memory, 1, -1, -1)
    batch, rows = TokenBatch(1024), LogitsRows(model.n_vocab)
    batch.add(context, 0, 1, True)
    assert batch.decode(model.ctx) == 0
    out = []
    for _ in range(count):
        token = int(rows(model.ctx, batch.size - 1).argmax())
        out.append(token)
        batch.clear()
        batch.add([token], len(context) + len(out) - 1, 1, True)
        assert batch.decode(model.ctx) == 0
    llama_cpp.llama_memory_seq_rm(model.memory, 1, -1, -1)
    return out


def test_drafts_are_the_greedy_continuation_and_follow_a_changed_context(target, draft):
    context = target.tokenize(PROMPT, add_special=False, parse_special=True)
    expected = greedy_continuation(target, context, 40)
    proposed = []
    # Walk the reply as the engine would after accepting drafts: each call's context is
    # the prompt plus the reply so far. Drafts may stop early (an unsure draft), never
    # differ from the greedy continuation.
    for done in range(0, 32, 4):
        drafts = draft.draft([(0, context + expected[:done], 6)])[0]
        assert drafts == expected[done : done + len(drafts)]
        assert len(drafts) <= 6
        proposed += drafts
    assert proposed, "a counting reply is predictable: some draft was expected"
    # Then the context goes another way (the target rejected a draft, or a new request
    # took the slot): the draft sequence drops what no longer matches and follows.
    other = target.tokenize(
        "<|im_start|>user\nName the days of the week.<|im_end|>\n<|im_start|>assistant\n",
        add_special=False,
        parse_special=True,
    )
    expected = greedy_continuation(target, other, 12)
    for done in (0, 3, 6):
        drafts = draft.draft([(0, other + expected[:done], 4)])[0]
        assert drafts == expected[done : done + len(drafts)]


def test_a_long_context_is_read_in_steps_before_any_draft(target, draft):
    filler = "one, two, three, four, five, six, seven, eight, nine, ten. " * 40
    context = target.tokenize(PROMPT + filler, add_special=False, parse_special=True)
    assert len(context) > 2 * CATCH_UP_PER_STEP
    draft.forget(1)
    calls = 0
    while True:
        calls += 1
        drafts = draft.draft([(1, context, 4)])[1]
        caught_up = draft._sequences[1].tokens[: len(context)] == context
        if caught_up:
            break
        assert drafts == [], "no draft before the context is read"
    assert calls == -(-len(context) // CATCH_UP_PER_STEP)


def test_a_draft_model_with_another_vocabulary_is_refused(target, gemma_models_dir):
    with pytest.raises(DraftModelMismatch, match="same vocabulary"):
        DraftModel(gemma_models_dir / f"{GEMMA}.gguf", target, target.options)


PROMPTS = [PROMPT, PROMPT.replace("thirty", "twelve").replace("words", "digits")]


async def replies(draft: bool) -> list[tuple[str, Finished]]:
    settings = ModelSettings.load(
        {
            "parallel": 2,
            "n_ctx": 1024,
            "threads": 2,
            "speculate": draft,
            "draft_model": str(bundled_model_path()) if draft else None,
        }
    )
    engine = LlamaEngine(settings.engine_options(bundled_model_path(), "smollm2"))
    await engine.start()
    try:
        out = []
        for text in PROMPTS:
            request = GenerationRequest(
                Prompt(text, parse_special=True),
                max_tokens=48,
                sampling=SamplingParams(temperature=0),
            )
            parts, finished = [], None
            async for event in engine.submit(request):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
                else:
                    finished = event
            assert isinstance(finished, Finished)
            out.append(("".join(parts), finished))
        return out
    finally:
        await engine.close()


def test_replies_are_the_same_with_a_draft_model_and_its_guesses_are_taken(monkeypatch):
    """The engine with the target's own file as its draft model: every greedy reply is the
    one it gives without speculation, and most guesses are taken (same weights; a close
    pick can still turn between a one-row and a many-row batch, and a reply that ends
    mid-guess leaves the rest untaken), which shows the drafts went through the walk."""

    # Whether guessing pays on this machine is the policy's business (test_speculation.py);
    # here every step may guess.
    monkeypatch.setattr(StepCost, "break_even", lambda self, generating: 0.0)
    monkeypatch.setattr(StepCost, "probing", property(lambda self: True))  # no draft cost
    monkeypatch.setattr(llama, "step_budget", lambda generating, reading_prompt: 8)
    monkeypatch.setattr(llama, "DRAFT_COST_LIMIT", float("inf"))  # kept, however slow
    with_draft = asyncio.run(replies(True))
    without = asyncio.run(replies(False))
    assert [text for text, _ in with_draft] == [text for text, _ in without]
    for (_, drafted), (_, plain) in zip(with_draft, without, strict=True):
        assert drafted.completion_tokens == plain.completion_tokens
    guessed = sum(finished.draft_tokens for _, finished in with_draft)
    taken = sum(finished.accepted_draft_tokens for _, finished in with_draft)
    assert guessed > 0 and taken >= 0.5 * guessed, (guessed, taken)


def test_a_draft_model_as_slow_as_the_target_is_let_go_for_the_ngram_lookup(monkeypatch, caplog):
    """The target's own file drafts at the target's own speed, which can never pay: once
    measured, the engine unloads it and goes on with n-gram guesses, replies unchanged."""
    monkeypatch.setattr(StepCost, "break_even", lambda self, generating: 0.0)
    monkeypatch.setattr(llama, "step_budget", lambda generating, reading_prompt: 8)
    monkeypatch.setattr(llama, "DRAFT_PROPOSALS_BEFORE_VERDICT", 2)
    # Every step guesses here, so no step of one row is timed: any target step is shorter.
    monkeypatch.setattr(StepCost, "seconds", lambda self, rows: 1e-9)
    with caplog.at_level("WARNING", logger="hearth.engine.llama"):
        with_draft = asyncio.run(replies(True))
    assert "cannot pay for its guesses here" in caplog.text
    without = asyncio.run(replies(False))
    assert [text for text, _ in with_draft] == [text for text, _ in without]


def test_an_engine_with_a_draft_model_of_another_vocabulary_does_not_start(gemma_models_dir):
    settings = ModelSettings.load(
        {"parallel": 1, "n_ctx": 512, "draft_model": str(gemma_models_dir / f"{GEMMA}.gguf")}
    )
    engine = LlamaEngine(settings.engine_options(bundled_model_path(), "smollm2"))
    with pytest.raises(DraftModelMismatch, match="same vocabulary"):
        asyncio.run(engine.start())
