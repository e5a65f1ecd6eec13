"""Where a decode step's time goes: Hearth's engine in process, with timers on its seams.

Runs the real engine on the bundled model (or --model) with streams consumed on uvloop, as
the server consumes them, and prints per round the medians of: llama_decode, the time
between one llama_decode and the next (everything the scheduler does in Python and in
llama.cpp's sampler), the sampler call inside it, and the hand-off of events to the event
loop. Not a test: it prints what it measured.

    python bench/step_profile.py [--streams 1] [--tokens 256] [--temperature 0] [--rounds 3]
                                 [--logit-bias TOKEN=BIAS ...]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvloop

from hearth.engine.base import GenerationRequest, Prompt, SamplingParams
from hearth.engine.batch import TokenBatch
from hearth.engine.llama import LlamaEngine
from hearth.engine.sampler import SamplerChain
from hearth.engine.stream import Outbox
from hearth.runtime.settings import ModelSettings, bundled_model_path

PROMPT = "Once upon a time, a dragon decided to learn how to bake bread. "


class Timings:
    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.decodes: list[tuple[float, float]] = []
        self.samples: list[float] = []
        self.hand_offs: list[float] = []

    def wrap(self, owner: type, name: str, record: Callable[[float, float], None]) -> None:
        original = getattr(owner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = original(*args, **kwargs)
            record(started, time.perf_counter())
            return result

        setattr(owner, name, timed)

    def report(self, deltas: int) -> str:
        # The first step reads the prompts; steady decoding starts after it.
        steps = self.decodes[1:]
        decode = statistics.median(end - start for start, end in steps)
        between = statistics.median(b[0] - a[1] for a, b in itertools.pairwise(steps))
        wall = steps[-1][1] - steps[0][0]
        return (
            f"{deltas} text deltas in {len(steps)} steps, "
            f"{1e3 * wall / len(steps):.2f} ms a step on average: "
            f"llama_decode {1e3 * decode:.2f} ms, between decodes {1e6 * between:.0f} us "
            f"(sampler call {1e6 * statistics.median(self.samples):.0f} us, "
            f"hand-off {1e6 * statistics.median(self.hand_offs):.0f} us)"
        )


async def one_round(engine: LlamaEngine, args: argparse.Namespace, round_: int) -> int:
    bias = tuple((int(token), float(value)) for token, value in args.logit_bias)
    sampling = SamplingParams(temperature=args.temperature, seed=round_, logit_bias=bias)

    async def stream(i: int) -> int:
        request = GenerationRequest(
            Prompt(f"{PROMPT}({i})"), max_tokens=args.tokens, sampling=sampling
        )
        return sum([1 async for _ in engine.submit(request)]) - 1  # less the Finished event

    return sum(await asyncio.gather(*(stream(i) for i in range(args.streams))))


async def main(args: argparse.Namespace) -> None:
    overrides: dict[str, Any] = {"threads": args.threads, "parallel": max(args.streams, 1)}
    if args.model:
        overrides["model"] = str(args.model)
    settings = ModelSettings.load(overrides)
    engine = LlamaEngine(settings.engine_options(bundled_model_path(), "bench"))
    await engine.start()
    timings = Timings()
    timings.wrap(TokenBatch, "decode", lambda a, b: timings.decodes.append((a, b)))
    timings.wrap(SamplerChain, "sample", lambda a, b: timings.samples.append(b - a))
    timings.wrap(Outbox, "flush", lambda a, b: timings.hand_offs.append(b - a))
    try:
        for round_ in range(args.rounds):
            timings.clear()
            deltas = await one_round(engine, args, round_)
            print(f"round {round_ + 1}: {timings.report(deltas)}", flush=True)
    finally:
        await engine.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--logit-bias",
        type=lambda text: tuple(text.split("=", 1)),
        action="append",
        default=[],
        metavar="TOKEN=BIAS",
        help="a logit_bias entry, as a request gives it (e.g. 2=-100 bans SmolLM2's <|im_end|>)",
    )
    uvloop.run(main(parser.parse_args()))
