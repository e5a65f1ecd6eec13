"""Time to first token after a restart, with the prompt cache on disk and without it.

For each mode (disk cache on, off) and round: a real `hearth serve` on a fresh data
directory reads a long chat conversation cold (time to first token), is stopped with
SIGTERM (as a restart stops it), starts again on the same data directory, and gets the
conversation's next turn (time to first token again). Prints each figure, the restart's
ratio to the cold read (the goal is <= 0.25x with the cache on), the cached tokens the
server reported, and the size of the files the cache wrote per token.

    .venv/bin/python bench/restart_cache_bench.py                    # ~4,400 tokens
    .venv/bin/python bench/restart_cache_bench.py --tokens 1500      # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from hearth.runtime.settings import PROMPT_CACHE_DIR, bundled_model_path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import RunningServer, ServerConfig, free_port, hearth

SHORES = ("north", "east", "south", "west")
BIRDS = ("gulls", "terns", "herons", "cormorants", "plovers", "curlews")
TOKENS_PER_LINE = 25  # what one survey line below costs SmolLM2's tokenizer, about


def conversation(tokens: int) -> list[dict[str, str]]:
    """A chat of about `tokens` tokens: turns of varied lines with numbers in them, so that
    no two lines tokenize alike, and short replies between them."""
    lines = [
        f"Station {i} on the {SHORES[i % 4]} shore counted {i * 53 % 997} "
        f"{BIRDS[i % 6]} and {i * 29 % 113} {BIRDS[(i + 3) % 6]} on day {i % 31 + 1}."
        for i in range(max(1, tokens // TOKENS_PER_LINE))
    ]
    messages = [{"role": "system", "content": "You keep a bird survey and answer briefly."}]
    for turn in range(0, len(lines), 20):
        messages.append({"role": "user", "content": "\n".join(lines[turn : turn + 20])})
        messages.append({"role": "assistant", "content": f"Noted {len(lines[turn : turn + 20])}."})
    messages.append({"role": "user", "content": "Which station counted the most gulls?"})
    return messages


def first_token(url: str, messages: list[dict[str, str]], max_tokens: int) -> dict:
    """One streamed greedy chat: seconds to the first content, the reply, the usage."""
    body = {
        "model": "bench",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft, parts, usage = None, [], {}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=900) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                content = (choice.get("delta") or {}).get("content")
                if content:
                    ttft = ttft or time.perf_counter() - started
                    parts.append(content)
    return {
        "ttft": ttft if ttft is not None else time.perf_counter() - started,
        "text": "".join(parts),
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "completion_tokens": usage.get("completion_tokens", 0),
        "cached": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
    }


def one_round(mode: str, args: argparse.Namespace, work: Path) -> dict:
    data = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=work))
    extra = ["--library-dir", str(data), "--cache-disk-mib", "4096" if mode == "on" else "0"]

    def serve() -> RunningServer:
        port = free_port()
        config = ServerConfig(bundled_model_path(), port, args.threads, args.slots, args.n_ctx)
        return RunningServer(f"hearth-{mode}", hearth(config) + extra, port, work / "serve.log")

    messages = conversation(args.tokens)
    server = serve()
    try:
        cold = first_token(server.url, messages, args.reply_tokens)
    finally:
        server.stop()
    messages += [
        {"role": "assistant", "content": cold["text"]},
        {"role": "user", "content": "And which one saw the fewest terns?"},
    ]
    server = serve()
    try:
        restart = first_token(server.url, messages, args.reply_tokens)
    finally:
        server.stop()
    files = list((data / PROMPT_CACHE_DIR).glob("*/*.kvc"))
    return {
        "cold": cold,
        "restart": restart,
        "file_bytes": sum(path.stat().st_size for path in files),
        "files": len(files),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4400, help="conversation size, about")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--n-ctx", type=int, default=8192, help="context per slot")
    parser.add_argument("--reply-tokens", type=int, default=16)
    args = parser.parse_args()

    results: dict[str, list[dict]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="restart-bench-") as tmp:
        for index in range(args.rounds):
            for mode in ("on", "off") if index % 2 == 0 else ("off", "on"):
                result = one_round(mode, args, Path(tmp))
                results[mode].append(result)
                cold, restart = result["cold"], result["restart"]
                print(
                    f"round {index + 1} disk cache {mode:>3}: {cold['prompt_tokens']} tokens "
                    f"cold {cold['ttft']:.2f} s; after restart {restart['prompt_tokens']} "
                    f"tokens, {restart['cached']} cached, first token {restart['ttft']:.2f} s "
                    f"({restart['ttft'] / cold['ttft']:.2f}x cold)",
                    flush=True,
                )
    print("\n| disk cache | cold first token | after restart | ratio | cached tokens |")
    print("|---|---|---|---|---|")
    for mode, rounds in results.items():
        cold = statistics.median(r["cold"]["ttft"] for r in rounds)
        warm = statistics.median(r["restart"]["ttft"] for r in rounds)
        ratio = statistics.median(r["restart"]["ttft"] / r["cold"]["ttft"] for r in rounds)
        cached = statistics.median(r["restart"]["cached"] for r in rounds)
        print(f"| {mode} | {cold:.2f} s | {warm:.3f} s | {ratio:.3f}x | {cached:.0f} |")
    for result in results["on"]:
        # The cold turn's prompt and reply, less the reply's last token (sampled, never read).
        stored = result["cold"]["prompt_tokens"] + result["cold"]["completion_tokens"] - 1
        if result["files"]:
            print(
                f"disk: {result['files']} file(s), {result['file_bytes'] / 2**20:.1f} MiB, "
                f"about {result['file_bytes'] / max(1, stored) / 1024:.1f} KiB a token"
            )
    texts = {r["restart"]["text"] for rounds in results.values() for r in rounds}
    print(f"replies after the restart identical across modes: {len(texts) == 1}")


if __name__ == "__main__":
    main()
