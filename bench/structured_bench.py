"""Tokens/s of a json_schema-constrained reply against a free one, and schema compile time.

Runs the real engine in process on the bundled model (or --model): the same chat prompt,
greedy, free and under the grammar compiled from a schema in alternating rounds, and prints
the decode rate of each (tokens after the first, over the time after the first) and the
median time of one SamplerChain.sample, the grammar's own cost per token. Then it times the
compilation of a large schema, cold and from the cache. Not a test: it prints what it measured.

    python bench/structured_bench.py [--tokens 128] [--rounds 3] [--temperature 0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import uvloop

from hearth.engine import grammar as engine_grammar
from hearth.engine.base import Finished, GenerationRequest, Prompt, SamplingParams
from hearth.engine.llama import LlamaEngine
from hearth.engine.sampler import SamplerChain
from hearth.runtime import structured
from hearth.runtime.settings import ModelSettings, bundled_model_path

PROMPT = (
    "<|im_start|>user\nList ten animals with their habitat and a short fact about each."
    "<|im_end|>\n<|im_start|>assistant\n"
)
SCHEMA = {
    "type": "object",
    "properties": {
        "animals": {
            "type": "array",
            "minItems": 3,
            "maxItems": 10,
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "habitat": {"enum": ["land", "sea", "air"]},
                    "fact": {"type": "string", "maxLength": 120},
                },
                "required": ["name", "habitat", "fact"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["animals"],
    "additionalProperties": False,
}


def large_schema(n: int) -> dict:
    """n object definitions, each referring to the next, with enums and optional fields."""
    defs = {
        f"Item{i}": {
            "type": "object",
            "properties": {
                "id": {"type": "integer"},
                "label": {"type": "string", "maxLength": 40},
                "state": {"enum": ["new", "open", "closed", f"other{i}"]},
                "when": {"type": "string", "format": "date-time"},
                "next": {"anyOf": [{"$ref": f"#/$defs/Item{i + 1}"}, {"type": "null"}]}
                if i + 1 < n
                else {"type": "null"},
            },
            "required": ["id", "label", "state"],
            "additionalProperties": False,
        }
        for i in range(n)
    }
    return {"$defs": defs, "$ref": "#/$defs/Item0"}


SAMPLE_TIMES: list[float] = []


def time_samples() -> None:
    """Record how long each SamplerChain.sample takes: the grammar's own cost per token."""
    sample = SamplerChain.sample

    def timed(self: SamplerChain, *args: Any) -> int:
        start = time.perf_counter()
        try:
            return sample(self, *args)
        finally:
            SAMPLE_TIMES.append(time.perf_counter() - start)

    SamplerChain.sample = timed


async def one_reply(
    engine: LlamaEngine, args: argparse.Namespace, grammar: str | None
) -> tuple[int, float, float]:
    request = GenerationRequest(
        prompt=Prompt(PROMPT, add_special=False, parse_special=True),
        max_tokens=args.tokens,
        sampling=SamplingParams(temperature=args.temperature, seed=1),
        grammar=grammar,
    )
    SAMPLE_TIMES.clear()
    start = first = time.perf_counter()
    tokens = 0
    async for event in engine.submit(request):
        if isinstance(event, Finished):
            tokens = event.completion_tokens
        elif first == start:
            first = time.perf_counter()
    elapsed = time.perf_counter() - first
    rate = (tokens - 1) / elapsed if elapsed > 0 and tokens > 1 else 0.0
    return tokens, rate, statistics.median(SAMPLE_TIMES)


async def main(args: argparse.Namespace) -> None:
    overrides: dict[str, Any] = {"threads": args.threads, "parallel": 1}
    if args.model:
        overrides["model"] = str(args.model)
    settings = ModelSettings.load(overrides)
    engine = LlamaEngine(settings.engine_options(bundled_model_path(), "bench"))
    await engine.start()
    gbnf = structured.schema_grammar(SCHEMA, param="bench")
    kinds = {"unconstrained": None, "json_schema": gbnf}
    runs: dict[str, list[tuple[int, float, float]]] = {label: [] for label in kinds}
    time_samples()
    try:
        # Rounds alternate between the two, so a busy neighbour on a shared machine slows
        # both alike instead of whichever happened to run during its burst.
        for round_ in range(args.rounds):
            for label, grammar in kinds.items():
                runs[label].append(await one_reply(engine, args, grammar))
                tokens, rate, sampling = runs[label][-1]
                print(
                    f"round {round_ + 1} {label}: {tokens} tokens, {rate:.1f} tokens/s, "
                    f"sampling {sampling * 1e6:.0f} us a token",
                    flush=True,
                )
        for label, done in runs.items():
            rates = [rate for _, rate, _ in done]
            sampling = statistics.median(s for _, _, s in done)
            print(
                f"{label:>14}: {statistics.median(rates):6.1f} tokens/s (median of "
                f"{args.rounds}; all: {', '.join(f'{r:.1f}' for r in rates)}; "
                f"{done[0][0]} tokens a reply), sampling {sampling * 1e6:.0f} us a token",
                flush=True,
            )
    finally:
        await engine.close()
    for n in (10, 100):
        schema = large_schema(n)
        engine_grammar._compile.cache_clear()
        start = time.perf_counter()
        structured.schema_grammar(schema, param="bench")
        cold = time.perf_counter() - start
        start = time.perf_counter()
        structured.schema_grammar(schema, param="bench")
        warm = time.perf_counter() - start
        print(
            f"compile {n}-definition schema: {cold * 1e3:.1f} ms cold, {warm * 1e6:.1f} us cached"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=3)
    uvloop.run(main(parser.parse_args()))
