"""A soak: --clients clients streaming without pause for --minutes; throughput and RSS.

Starts a real `hearth serve --parallel 4` on the bundled model. Each client sends streamed
chat completions one after another, each with a different question, so the prompt cache
is hit and missed as in real use. Every request asks for --tokens tokens with
end-of-sequence banned. Every --every seconds the script prints the tokens generated in
that interval (tok/s), the requests completed, failed requests, and the server's RSS. At
the end it prints the RSS of the first and last samples and the peak. RSS must level
off.

    .venv/bin/python bench/soak_bench.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

from hearth.runtime.settings import bundled_model_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import RunningServer, ServerConfig, free_port, hearth

EOS = "2"  # SmolLM2's <|im_end|>
TOPICS = [
    "a lighthouse",
    "the sea",
    "a dragon",
    "bread",
    "a robot",
    "winter",
    "a city",
    "the moon",
    "a garden",
    "an old clock",
    "a train",
    "music",
]


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens = 0
        self.completed = 0
        self.failed = 0

    def take(self) -> tuple[int, int, int]:
        with self.lock:
            taken = (self.tokens, self.completed, self.failed)
            self.tokens = self.completed = self.failed = 0
            return taken


def client(
    url: str, model: str, tokens: int, index: int, stop: threading.Event, tally: Tally
) -> None:
    n = index
    with httpx.Client(base_url=url, timeout=300) as http:
        while not stop.is_set():
            topic = TOPICS[n % len(TOPICS)]
            n += 1
            body = {
                "model": model,
                "stream": True,
                "max_tokens": tokens,
                "logit_bias": {EOS: -100},
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": f"Tell me about {topic}."}],
            }
            try:
                with http.stream("POST", "/v1/chat/completions", json=body) as response:
                    usage = None
                    for line in response.iter_lines():
                        if line.startswith("data: {"):
                            usage = json.loads(line[len("data: ") :]).get("usage") or usage
                with tally.lock:
                    if response.status_code == 200 and usage:
                        tally.tokens += usage["completion_tokens"]
                        tally.completed += 1
                    else:
                        tally.failed += 1
            except httpx.HTTPError:
                with tally.lock:
                    tally.failed += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    config = ServerConfig(bundled_model_path(), port, args.threads, slots=4, ctx_per_slot=1024)
    with tempfile.TemporaryDirectory() as tmp:
        server = RunningServer("hearth", hearth(config), port, Path(tmp) / "serve.log")
        process = psutil.Process(server.process.pid)
        model = httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"]
        stop, tally = threading.Event(), Tally()
        workers = [
            threading.Thread(target=client, args=(server.url, model, args.tokens, i, stop, tally))
            for i in range(args.clients)
        ]
        print(
            f"{args.clients} clients, {args.tokens} tokens a request, --parallel 4, "
            f"{args.minutes:g} minutes"
        )
        print(f"{'t (s)':>6} {'tok/s':>7} {'done':>5} {'failed':>6} {'RSS MiB':>8}")
        started = time.monotonic()
        for worker in workers:
            worker.start()
        samples: list[float] = []
        try:
            while time.monotonic() - started < args.minutes * 60:
                time.sleep(args.every)
                tokens, completed, failed = tally.take()
                rss = process.memory_info().rss / 2**20
                samples.append(rss)
                print(
                    f"{time.monotonic() - started:6.0f} {tokens / args.every:7.1f} "
                    f"{completed:5} {failed:6} {rss:8.0f}",
                    flush=True,
                )
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=120)
            server.stop()
    if samples:
        print(
            f"RSS first sample {samples[0]:.0f} MiB, last {samples[-1]:.0f} MiB, "
            f"peak {max(samples):.0f} MiB"
        )


if __name__ == "__main__":
    main()
