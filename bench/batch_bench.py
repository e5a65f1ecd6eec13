"""What a batch costs live users, and what a batch gets: a real `hearth serve`, bundled model.

1. Interactive time to first token, idle: --probes streamed chats, one after another.
2. The same with a --lines batch running (then the batch is cancelled); with the batch on
   every slot, each probe suspends a batch line (the count is read from /health).
3. Batch throughput: --throughput-lines lines as a batch, alone, against the same lines sent
   by a client at once, --parallel at a time (completion tokens over wall time), --rounds
   times, the order flipped each round.
Every reply is greedy with end-of-sequence banned, so each line takes --tokens tokens.

    .venv/bin/python bench/batch_bench.py --lines 200 --probes 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
from servers import free_port

NO_EOS = {"2": -100}  # SmolLM2's <|im_end|>


def body(n: int, tokens: int) -> dict:
    return {
        "model": "smollm2",
        "messages": [{"role": "user", "content": f"Write a note about the number {n}."}],
        "max_tokens": tokens,
        "temperature": 0,
        "logit_bias": NO_EOS,
    }


def start(data: Path, parallel: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "hearth", "serve", "--port", str(port)]
    command += ["--parallel", str(parallel), "--threads", str(threads), "--n-ctx", "1024"]
    command += ["--library-dir", str(data), "--no-web", "--log-level", "warning"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("hearth serve did not start")


def ttft(url: str, n: int) -> float:
    started = time.perf_counter()
    request = {**body(1000 + n, 16), "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=request, timeout=300) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                return time.perf_counter() - started
    raise RuntimeError("no token came")


def submit(client: openai.OpenAI, count: int, tokens: int) -> str:
    lines = [
        {
            "custom_id": f"l{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body(i, tokens),
        }
        for i in range(count)
    ]
    content = "".join(json.dumps(x) + "\n" for x in lines).encode()
    file_id = client.files.create(file=("bench.jsonl", content), purpose="batch").id
    return client.batches.create(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    ).id


def wait(client: openai.OpenAI, batch_id: str, done) -> openai.types.Batch:
    while True:
        batch = client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        time.sleep(0.1)


def batch_rate(client: openai.OpenAI, count: int, tokens: int) -> float:
    started = time.perf_counter()
    batch = wait(client, submit(client, count, tokens), lambda b: b.status == "completed")
    wall = time.perf_counter() - started
    rows = client.files.content(batch.output_file_id).text.splitlines()
    made = sum(json.loads(r)["response"]["body"]["usage"]["completion_tokens"] for r in rows)
    return made / wall


def client_rate(client: openai.OpenAI, count: int, tokens: int, parallel: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        replies = list(
            pool.map(lambda i: client.chat.completions.create(**body(i, tokens)), range(count))
        )
    return sum(r.usage.completion_tokens for r in replies) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--throughput-lines", type=int, default=48)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="throughput rounds, order flipped")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        process, url = start(Path(data), args.parallel, args.threads)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        try:
            ttft(url, -1)  # warm-up
            idle = [ttft(url, n) for n in range(args.probes)]
            batch_id = submit(client, args.lines, args.tokens)
            wait(client, batch_id, lambda b: b.request_counts.completed >= 1)
            busy = [ttft(url, n) for n in range(args.probes)]
            counts = client.batches.retrieve(batch_id).request_counts
            health = httpx.get(f"{url}/health", timeout=10).json()
            suspended = health["engine"]["suspended_batch_lines"]  # the default model's
            client.batches.cancel(batch_id)
            wait(client, batch_id, lambda b: b.status == "cancelled")
            alone, sent = [], []
            for round_ in range(args.rounds):
                runs = [
                    lambda: alone.append(batch_rate(client, args.throughput_lines, args.tokens)),
                    lambda: sent.append(
                        client_rate(client, args.throughput_lines, args.tokens, args.parallel)
                    ),
                ]
                for measure in runs if round_ % 2 == 0 else runs[::-1]:
                    measure()
        finally:
            process.terminate()
            process.wait()
    print(f"time to first token, idle:          median {statistics.median(idle):.3f} s {fmt(idle)}")
    print(
        f"time to first token, batch running: median {statistics.median(busy):.3f} s {fmt(busy)}"
        f"  ({counts.completed} of {counts.total} lines done when the probes ended; "
        f"{suspended} batch lines suspended for them)"
    )
    print(
        f"batch alone, {args.throughput_lines} lines: median {statistics.median(alone):.1f} "
        f"completion tok/s {fmt(alone, 1)}"
    )
    print(
        f"same lines from a client, {args.parallel} at a time: median "
        f"{statistics.median(sent):.1f} completion tok/s {fmt(sent, 1)}"
    )
    print(f"batch alone / client: {statistics.median(alone) / statistics.median(sent):.2f}x")


def fmt(values: list[float], digits: int = 3) -> str:
    return "(" + ", ".join(f"{v:.{digits}f}" for v in values) + ")"


if __name__ == "__main__":
    main()
