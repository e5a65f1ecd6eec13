"""Batch work yields to interactive work in the real engine's admission."""

from __future__ import annotations

import asyncio

import pytest

from hearth.engine.base import Finished, GenerationRequest, Prompt, SamplingParams, TextDelta
from hearth.engine.llama import LlamaEngine
from hearth.runtime.settings import ModelSettings, bundled_model_path

# Greedy, end of sequence (id 2 in SmolLM2) banned: every reply runs to max_tokens.
NO_EOS = SamplingParams(temperature=0, logit_bias=((2, -100.0),))


def request(text: str, max_tokens: int, priority: str) -> GenerationRequest:
    return GenerationRequest(
        Prompt(text), max_tokens=max_tokens, sampling=NO_EOS, priority=priority
    )


def on_engine(parallel: int, scenario, cache_ram_mib: int | None = None) -> None:
    values = {"parallel": parallel, "n_ctx": 512, "threads": 2}
    if cache_ram_mib is not None:
        values["cache_ram_mib"] = cache_ram_mib
    settings = ModelSettings.load(values)

    async def main() -> None:
        engine = LlamaEngine(settings.engine_options(bundled_model_path(), "smollm2"))
        await engine.start()
        try:
            await scenario(engine)
        finally:
            await engine.close()

    asyncio.run(main())


async def collect(generation, log: list[str], name: str) -> tuple[str, Finished]:
    """The generation's whole text and its end, logging its first text and its end."""
    text, finished = "", None
    async for event in generation:
        if isinstance(event, TextDelta):
            if not text:
                log.append(f"{name} first")
            text += event.text
        if isinstance(event, Finished):
            finished = event
            log.append(f"{name} done")
    assert finished is not None
    return text, finished


async def wait_for(log: list[str], *entries: str) -> None:
    while not all(entry in log for entry in entries):
        await asyncio.sleep(0.01)


STORIES = [f"Story {i}: once upon a time" for i in range(3)]


def test_a_batch_alone_takes_every_slot():
    async def scenario(engine: LlamaEngine) -> None:
        log: list[str] = []
        lines = [engine.submit(request(story, 16, "batch")) for story in STORIES]
        tasks = [asyncio.create_task(collect(g, log, f"batch{i}")) for i, g in enumerate(lines)]
        await wait_for(log, "batch0 first", "batch1 first")
        # Two slots, three lines: two run, none kept free for a chat that may come.
        assert engine.load()["slots_busy"] == 2
        await asyncio.gather(*tasks)
        assert log.index("batch0 done") < log.index("batch2 first")

    on_engine(2, scenario)


@pytest.mark.parametrize("cache_ram_mib", [None, 0], ids=["from-host-cache", "read-again"])
def test_a_chat_suspends_a_batch_line_which_then_writes_exactly_what_it_would_have(
    cache_ram_mib,
):
    """A chat arriving with every slot busy with batch lines starts at once; the paused
    line's output is the same text, never repeated nor cut, with the same token count,
    whether its KV comes back from host memory or (no host cache) is read again."""
    stories = STORIES

    async def scenario(engine: LlamaEngine) -> None:
        alone = await asyncio.gather(
            *(collect(engine.submit(request(s, 40, "batch")), [], "") for s in stories)
        )
        assert engine.stats.suspended_batch_lines == 0
        restored: list[int] = []  # how many tokens the resumed line did not read again
        resume = engine._resume

        def watch(slot) -> None:
            resume(slot)
            restored.append(len(slot.tokens))

        engine._resume = watch

        log: list[str] = []
        lines = [engine.submit(request(story, 40, "batch")) for story in stories]
        tasks = [asyncio.create_task(collect(g, log, f"batch{i}")) for i, g in enumerate(lines)]
        await wait_for(log, "batch0 first", "batch1 first")  # both slots busy, one line queued
        chat_text, chat_end = await collect(
            engine.submit(request("The capital of France is", 8, "interactive")), log, "chat"
        )
        interrupted = await asyncio.gather(*tasks)

        assert engine.stats.suspended_batch_lines == 1
        # Restored: all it had evaluated (at least its prompt); read again: none of it.
        assert len(restored) == 1 and (restored[0] > 6) == (cache_ram_mib is None)
        # The chat did not wait for a batch line to end, and went ahead of the queued one.
        assert log.index("chat first") < min(log.index("batch0 done"), log.index("batch1 done"))
        assert log.index("chat done") < log.index("batch2 first")
        assert chat_end.completion_tokens == 8 and chat_text
        for (text, end), (expected_text, expected_end) in zip(interrupted, alone, strict=True):
            assert text == expected_text
            assert end.completion_tokens == expected_end.completion_tokens == 40
            assert end.reason == "length"

    on_engine(2, scenario, cache_ram_mib)


def test_a_batch_line_never_suspends_another():
    async def scenario(engine: LlamaEngine) -> None:
        log: list[str] = []
        first = engine.submit(request(STORIES[0], 12, "batch"))
        first_task = asyncio.create_task(collect(first, log, "batch0"))
        await wait_for(log, "batch0 first")
        await collect(engine.submit(request(STORIES[1], 4, "batch")), log, "batch1")
        await first_task
        assert log.index("batch0 done") < log.index("batch1 first")
        assert engine.stats.suspended_batch_lines == 0

    on_engine(1, scenario)


def test_with_one_slot_a_batch_line_still_runs():
    async def scenario(engine: LlamaEngine) -> None:
        log: list[str] = []
        await collect(engine.submit(request("Once upon a time", 4, "batch")), log, "batch")
        assert log == ["batch first", "batch done"]

    on_engine(1, scenario)
