"""Streams dropped by their clients at random points: every slot comes back, memory holds.

Starts a real `hearth serve --parallel 4` on the bundled model. Each round opens --streams
streamed chat completions, --concurrency at a time. Each client hangs up at a random point,
chosen with a fixed seed: before the answer's headers, after the role chunk, or after 1 to
40 tokens. After the round it waits for the server to notice, then reads /metrics. It
prints how many slots are still busy and how many requests are still waiting (both must be
0), the server's RSS before and after the round, and whether a normal request still
completes.

    .venv/bin/python bench/abort_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families

from hearth.runtime.settings import bundled_model_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import RunningServer, ServerConfig, free_port, hearth

EOS = "2"  # SmolLM2's <|im_end|>: banned, so no stream ends before its client hangs up


async def hang_up_at(client: httpx.AsyncClient, model: str, chunks: int, delay: float) -> None:
    """Stream a reply and drop the connection after `chunks` data lines (-1: before any)."""
    body = {
        "model": model,
        "stream": True,
        "max_tokens": 200,
        "logit_bias": {EOS: -100},
        "messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."}],
    }
    if chunks < 0:
        # Gone before the headers: the request is admitted, then its client disappears.
        request = asyncio.create_task(client.post("/v1/chat/completions", json=body))
        await asyncio.sleep(delay)
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await request
        return
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        seen = 0
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                seen += 1
                if seen > chunks:
                    break  # leaving the block closes the connection mid-stream


async def round_of_aborts(url: str, streams: int, concurrency: int, rng: random.Random) -> None:
    gate = asyncio.Semaphore(concurrency)
    # Each client its own connection, so hanging up closes a socket the server sees.
    async with httpx.AsyncClient(base_url=url, timeout=120) as probe:
        model = (await probe.get("/v1/models")).json()["data"][0]["id"]

    async def one() -> None:
        chunks = rng.choice([-1, 0, *range(1, 41)])
        delay = rng.uniform(0.0, 0.5)
        async with gate, httpx.AsyncClient(base_url=url, timeout=120) as client:
            await hang_up_at(client, model, chunks, delay)

    await asyncio.gather(*(one() for _ in range(streams)))


def engine_gauges(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        family.name: sum(sample.value for sample in family.samples)
        for family in text_string_to_metric_families(text)
        if family.name in ("hearth_slots_busy", "hearth_waiting")
    }


def settled(url: str, timeout: float = 30.0) -> dict[str, float]:
    """The gauges once no slot is busy, or as they are after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        gauges = engine_gauges(url)
        if not any(gauges.values()) or time.monotonic() > deadline:
            return gauges
        time.sleep(0.2)


def completes(url: str) -> bool:
    model = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
    body = {
        "model": model,
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120)
    return response.status_code == 200 and response.json()["choices"][0]["finish_reason"] in (
        "stop",
        "length",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    port = free_port()
    config = ServerConfig(bundled_model_path(), port, args.threads, slots=4, ctx_per_slot=1024)
    with tempfile.TemporaryDirectory() as tmp:
        server = RunningServer("hearth", hearth(config), port, Path(tmp) / "serve.log")
        process = psutil.Process(server.process.pid)
        try:
            print(
                f"{args.streams} streams a round, {args.concurrency} at a time, "
                "--parallel 4, each dropped at a random point"
            )
            for round_ in range(1, args.rounds + 1):
                before = process.memory_info().rss
                started = time.monotonic()
                asyncio.run(round_of_aborts(server.url, args.streams, args.concurrency, rng))
                seconds = time.monotonic() - started
                gauges = settled(server.url)
                after = process.memory_info().rss
                print(
                    f"round {round_}: {seconds:5.1f} s; after it slots busy "
                    f"{gauges.get('hearth_slots_busy', 0):.0f}, waiting "
                    f"{gauges.get('hearth_waiting', 0):.0f} (both must be 0); RSS "
                    f"{before / 2**20:.0f} -> {after / 2**20:.0f} MiB; a new request "
                    f"completes: {completes(server.url)}"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
