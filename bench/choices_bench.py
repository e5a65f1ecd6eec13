"""What n > 1 costs: tokens evaluated and decode steps for n = 1 and n = N on one prompt.

Starts a real `hearth serve` on the bundled model and sends the same kind of chat request
(a fresh prompt of about 240 tokens each time, so no earlier request's cache covers it)
with n = 1 and with --choices. The engine's counters in /health say how many tokens went
through llama_decode and in how many steps. Choices that each read the prompt again would
cost about n times the prompt; read once, n = 3 costs about what n = 1 does.

    .venv/bin/python bench/choices_bench.py --choices 3 --rounds 3
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import RunningServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def measure(url: str, n: int, tokens: int) -> dict[str, int]:
    question = f"{uuid.uuid4()} " + "Tell me about the sea and the sky. " * 20
    before = httpx.get(f"{url}/health").json()["engine"]
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": tokens,
        "temperature": 1.0,
        "n": n,
    }
    usage = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600).json()["usage"]
    after = httpx.get(f"{url}/health").json()["engine"]
    return {
        "prompt": usage["prompt_tokens"],
        "generated": usage["completion_tokens"],
        "evaluated": after["batch_tokens"] - before["batch_tokens"],
        "steps": after["steps"] - before["steps"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--choices", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "hearth",
        "serve",
        "--port",
        str(port),
        "--n-ctx",
        "2048",
        "--no-web",
        "--log-level",
        "warning",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        server = RunningServer("hearth", command, port, Path(tmp) / "serve.log")
        try:
            for round_ in range(1, args.rounds + 1):
                for n in (1, args.choices):
                    figures = measure(server.url, n, args.tokens)
                    print(
                        f"round {round_}  n={n}  "
                        + "  ".join(f"{k} {v}" for k, v in figures.items())
                    )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
