"""Batch work yields to interactive work in the real engine's admission."""

from __future__ import annotations

import asyncio

from hearth.engine.base import Finished, GenerationRequest, Prompt, SamplingParams, TextDelta
from hearth.engine.llama import LlamaEngine
from hearth.runtime.settings import ModelSettings, bundled_model_path

# Greedy, end of sequence (id 2 in SmolLM2) banned: every reply runs to max_tokens.
NO_EOS = SamplingParams(temperature=0, logit_bias=((2, -100.0),))


def request(text: str, max_tokens: int, priority: str) -> GenerationRequest:
    return GenerationRequest(
        Prompt(text), max_tokens=max_tokens, sampling=NO_EOS, priority=priority
    )


async def first_event(generation, log: list[str], name: str) -> None:
    async for event in generation:
        if isinstance(event, TextDelta) and f"{name} first" not in log:
            log.append(f"{name} first")
        if isinstance(event, Finished):
            log.append(f"{name} done")


def on_engine(parallel: int, scenario) -> None:
    settings = ModelSettings.load({"parallel": parallel, "n_ctx": 512, "threads": 2})

    async def main() -> None:
        engine = LlamaEngine(settings.engine_options(bundled_model_path(), "smollm2"))
        await engine.start()
        try:
            await scenario(engine)
        finally:
            await engine.close()

    asyncio.run(main())


def test_a_chat_overtakes_queued_batch_lines_and_batch_lines_leave_a_slot_free():
    async def scenario(engine: LlamaEngine) -> None:
        log: list[str] = []
        batch = [
            engine.submit(request(f"Story {i}: once upon a time", 48, "batch")) for i in range(3)
        ]
        first = asyncio.create_task(first_event(batch[0], log, "batch0"))
        while "batch0 first" not in log:
            await asyncio.sleep(0.01)
        # Two slots, three batch lines: one runs, the last free slot stays free.
        assert engine.load()["slots_busy"] == 1
        chat = engine.submit(request("The capital of France is", 4, "interactive"))
        rest = [
            asyncio.create_task(first_event(g, log, f"batch{i}"))
            for i, g in enumerate(batch[1:], 1)
        ]
        await first_event(chat, log, "chat")
        await asyncio.gather(first, *rest)
        # The chat took the free slot at once; the next batch line waited for a batch line.
        assert log.index("chat done") < log.index("batch1 first")
        assert log.index("batch0 done") < log.index("batch1 first")

    on_engine(2, scenario)


def test_with_one_slot_a_batch_line_still_runs():
    async def scenario(engine: LlamaEngine) -> None:
        log: list[str] = []
        await first_event(engine.submit(request("Once upon a time", 4, "batch")), log, "batch")
        assert log == ["batch first", "batch done"]

    on_engine(1, scenario)
