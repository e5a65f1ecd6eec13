"""SIGTERM with streams running: how each stream ends, and how long the server takes to exit.

Starts a real `hearth serve --parallel 4` on the bundled model, opens --streams streamed
chat completions, and sends SIGTERM once every one of them has its first token. Two
scenarios:

- finish: replies of 48 tokens and --drain-timeout 30. Every stream should run to its end
  with finish_reason "length" and [DONE].
- cut: replies of 2,000 tokens and --drain-timeout 3. Every stream should end at the
  timeout with finish_reason "length" and an error event (as OpenAI ends a stream that
  fails: no [DONE] after it), never as a torn connection.

For each stream it prints its tokens, its finish_reason, whether an error event came and
whether [DONE] came. It also prints what a new request got during the drain, the time from
the signal to the process's exit, and the exit status.

    .venv/bin/python bench/drain_bench.py
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from hearth.runtime.settings import bundled_model_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import RunningServer, ServerConfig, free_port, hearth

EOS = "2"  # SmolLM2's <|im_end|>: banned, so each reply runs to its max_tokens


@dataclass
class StreamEnd:
    tokens: int = 0
    finish_reason: str | None = None
    error_event: bool = False
    done: bool = False
    torn: str | None = None  # the transport error, if the body was cut
    started: threading.Event = field(default_factory=threading.Event)


def stream(url: str, model: str, max_tokens: int, end: StreamEnd) -> None:
    body = {
        "model": model,
        "stream": True,
        "max_tokens": max_tokens,
        "logit_bias": {EOS: -100},
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
    }
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=300) as response:
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[len("data: ") :]
                if data == "[DONE]":
                    end.done = True
                    continue
                chunk = json.loads(data)
                if "error" in chunk:
                    end.error_event = True
                for choice in chunk.get("choices", []):
                    if choice["delta"].get("content"):
                        end.tokens += 1
                        end.started.set()
                    end.finish_reason = choice.get("finish_reason") or end.finish_reason
    except httpx.HTTPError as error:
        end.torn = type(error).__name__
    finally:
        end.started.set()


def scenario(name: str, streams: int, max_tokens: int, drain_timeout: float, threads: int) -> None:
    port = free_port()
    config = ServerConfig(bundled_model_path(), port, threads, slots=4, ctx_per_slot=2048)
    command = [*hearth(config), "--drain-timeout", str(drain_timeout)]
    with tempfile.TemporaryDirectory() as tmp:
        server = RunningServer("hearth", command, port, Path(tmp) / "serve.log")
        model = httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"]
        ends = [StreamEnd() for _ in range(streams)]
        workers = [
            threading.Thread(target=stream, args=(server.url, model, max_tokens, end))
            for end in ends
        ]
        for worker in workers:
            worker.start()
        for end in ends:
            end.started.wait(timeout=120)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        try:
            refused = httpx.post(f"{server.url}/v1/chat/completions", json={}, timeout=10)
            newcomer = f"{refused.status_code}, Retry-After {refused.headers.get('retry-after')}"
        except httpx.HTTPError as error:
            newcomer = type(error).__name__
        status = server.process.wait(timeout=drain_timeout + 60)
        exited = time.monotonic() - signalled
        for worker in workers:
            worker.join(timeout=30)
        server.stop()
    print(f"\n{name}: {streams} streams of {max_tokens} tokens, --drain-timeout {drain_timeout:g}")
    for i, end in enumerate(ends, 1):
        how = f"torn ({end.torn})" if end.torn else "closed"
        print(
            f"  stream {i}: {end.tokens:4} tokens, finish_reason {end.finish_reason}, "
            f"error event {end.error_event}, [DONE] {end.done}, {how}"
        )
    print(f"  a new request during the drain: {newcomer}")
    print(f"  exit status {status}, {exited:.1f} s after SIGTERM")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    scenario("finish", args.streams, 48, 30, args.threads)
    scenario("cut", args.streams, 2000, 3, args.threads)


if __name__ == "__main__":
    main()
