"""Admission on the real engine: how many of a burst get a slot or a place in the queue."""

from __future__ import annotations

import asyncio

from hearth.engine.base import GenerationRequest, Prompt, SamplingParams
from hearth.engine.errors import QueueFull
from hearth.engine.llama import LlamaEngine
from hearth.runtime.settings import ServerSettings, bundled_model_path


def test_burst_of_32_against_4_free_slots_and_queue_8_admits_12():
    """Requests not yet moved into a slot counted as both waiting and occupying one, so a
    burst was admitted below capacity (9 of 32 instead of 12)."""
    settings = ServerSettings.load(
        {"parallel": 4, "max_queue": 8, "n_ctx": 512, "threads": 2, "web": False}
    )

    async def main() -> tuple[int, int, int]:
        engine = LlamaEngine(settings.engine_options(bundled_model_path(), "smollm2"))
        await engine.start()
        admitted, refused = [], 0
        try:
            request = GenerationRequest(
                Prompt("Once upon a time"), max_tokens=64, sampling=SamplingParams(temperature=0)
            )
            for _ in range(32):  # all in one tick of the loop: simultaneous
                try:
                    admitted.append(engine.submit(request))
                except QueueFull as full:
                    assert full.retry_after > 0
                    refused += 1
            active = engine.active
        finally:
            for generation in admitted:
                generation.cancel()
            await engine.close()
        return len(admitted), refused, active

    admitted, refused, active = asyncio.run(main())
    assert (admitted, refused) == (12, 20)
    assert active == 12
