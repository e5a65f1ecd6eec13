"""A burst against a small server: how many complete, how many get 503, none cut short.

Starts a real `hearth serve --parallel 4 --max-queue 8` on the bundled model, then sends
--clients streamed chat completions at once (default 32), each asking for --tokens tokens
with end-of-sequence banned so every admitted one runs to its full length. Per round it
prints how many completed, how many were refused with 503 and a Retry-After header, how
many 503s lacked the header, and how many admitted streams were truncated (ended without a
finish_reason or short of their tokens; must be 0). Admitted should be parallel + queue.

    .venv/bin/python bench/burst_bench.py --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

EOS = "2"  # SmolLM2's <|im_end|>


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(parallel: int, max_queue: int, threads: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hearth",
                "serve",
                "--port",
                str(port),
                "--parallel",
                str(parallel),
                "--max-queue",
                str(max_queue),
                "--n-ctx",
                "1024",
                "--threads",
                str(threads),
                "--no-web",
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"hearth serve did not start; see {log}")


async def one_client(client: httpx.AsyncClient, model: str, tokens: int, go: asyncio.Event) -> str:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": tokens,
        "temperature": 0,
        "logit_bias": {EOS: -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    await go.wait()
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code == 503:
            await response.aread()
            return "503 with Retry-After" if "retry-after" in response.headers else "503 bare"
        if response.status_code != 200:
            await response.aread()
            return f"status {response.status_code}"
        finish, usage, done = None, None, False
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                done = True
                continue
            chunk = json.loads(data)
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices", []):
                finish = choice.get("finish_reason") or finish
        full = usage is not None and usage["completion_tokens"] == tokens
        return "completed" if done and finish == "length" and full else "truncated"


async def burst(url: str, clients: int, tokens: int) -> Counter[str]:
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        model = (await client.get("/v1/models")).json()["data"][0]["id"]
        go = asyncio.Event()
        tasks = [asyncio.create_task(one_client(client, model, tokens, go)) for _ in range(clients)]
        await asyncio.sleep(0.2)  # every task waits at the start line
        go.set()
        return Counter(await asyncio.gather(*tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start(args.parallel, args.max_queue, args.threads, Path(tmp) / "serve.log")
        try:
            print(
                f"{args.clients} clients at once, --parallel {args.parallel} "
                f"--max-queue {args.max_queue}, {args.tokens} tokens each"
            )
            for round_ in range(1, args.rounds + 1):
                started = time.perf_counter()
                counts = asyncio.run(burst(url, args.clients, args.tokens))
                seconds = time.perf_counter() - started
                shown = ["completed", "503 with Retry-After", "truncated"]
                shown += sorted(set(counts) - set(shown))  # 503 bare, other statuses
                figures = ", ".join(f"{kind}: {counts[kind]}" for kind in shown)
                print(f"round {round_}: {figures} (truncated must be 0) in {seconds:.1f} s")
        finally:
            process.terminate()
            process.wait(timeout=60)


if __name__ == "__main__":
    main()
