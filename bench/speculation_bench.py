"""Speculative decoding: Hearth with and without it, and llama.cpp's llama-server with and
without its own n-gram speculation, on the same model, threads and slots.

    python bench/speculation_bench.py [--rounds 3] [--threads 2] [--slots 4]
                                      [--llama-server PATH] [--only hearth,hearth-no-spec]
                                      [--model TARGET.gguf --draft-model DRAFT.gguf]
                                      [--scenarios copy,rewrite,free,streams]

Scenarios (every server, same requests, greedy unless said):
  copy      a ~40-line file, then the start of its second version, as a text completion
            (/v1/completions), 256 tokens: decode tok/s of one stream. The bundled 135M
            model copies the file here, as a larger model copies the code it edits.
  rewrite   the same code in a chat, asked back with one method renamed, 256 tokens:
            decode tok/s of one stream. The 135M model does not copy it: it writes an
            explanation that repeats itself, so guesses come from its own reply.
  free      free text, 256 tokens: decode tok/s of one stream (guesses rarely pay)
  streams   1 stream at temperature 0.7 with a logit_bias (against the end-of-turn token),
            with a seed and without one, and 4 and 8 concurrent free-text streams at 0.7,
            128 tokens each: total tok/s (speculation must not slow a loaded server)
Each round runs a scenario on every server in turn, the order flipping every round, and the
table shows each server's median and Hearth's median per-round ratio to each other server.
For Hearth with speculation, the share of guessed tokens taken in each scenario is read
from /health. Not a test: it asserts nothing and prints what it measured.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import stream_chat, stream_completion
from servers import RunningServer, ServerConfig, find_llama_server, hearth, llama_server

CODE = """import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Inventory:
    path: Path
    items: dict[str, int] = field(default_factory=dict)

    def load(self) -> None:
        if self.path.exists():
            with self.path.open() as file:
                self.items = json.load(file)

    def save(self) -> None:
        with self.path.open("w") as file:
            json.dump(self.items, file, indent=2)

    def add(self, name: str, count: int = 1) -> int:
        if count <= 0:
            raise ValueError("count must be positive")
        self.items[name] = self.items.get(name, 0) + count
        return self.items[name]

    def remove(self, name: str, count: int = 1) -> int:
        have = self.items.get(name, 0)
        if count > have:
            raise ValueError(f"only {have} of {name} left")
        self.items[name] = have - count
        if self.items[name] == 0:
            del self.items[name]
        return have - count

    def total(self) -> int:
        return sum(self.items.values())

    def names(self) -> list[str]:
        return sorted(self.items)
"""

REWRITE = [
    {
        "role": "user",
        "content": "Here is some Python code:\n\n```python\n"
        + CODE
        + "```\n\nReturn the whole code unchanged except that the method `total` is renamed "
        "to `count_all`.",
    }
]
COPY = (
    "# inventory.py, version 1\n"
    + CODE
    + "\n\n# inventory.py, version 2: the same file, with `total` renamed to `count_all`\n"
    + "import json\n"
)
FREE = [{"role": "user", "content": "Write a long story about a dragon who learns to bake."}]
NO_END_OF_TURN = {"2": -100}  # SmolLM2's <|im_end|>: a reply runs to max_tokens


def client_for(timeout: float) -> httpx.AsyncClient:
    # A new connection per request, as serve_bench does (llama-server drops idle ones).
    return httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_keepalive_connections=0))


async def one_stream(url: str, messages: list[dict], tokens: int) -> float:
    async with client_for(900) as client:
        return (await stream_chat(client, url, messages, tokens)).decode_rate


async def one_completion(url: str, prompt: str, tokens: int) -> float:
    async with client_for(900) as client:
        return (await stream_completion(client, url, prompt, tokens)).decode_rate


async def streams(url: str, n: int, tokens: int, seeded: bool = True) -> float:
    async with client_for(900) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        # One stream alone is the sampling path the issue measured: a logit_bias as well.
        bias = NO_END_OF_TURN if n == 1 else None
        results = await asyncio.gather(
            *(
                stream_chat(
                    client,
                    url,
                    FREE,
                    tokens,
                    temperature=0.7,
                    seed=i if seeded else None,
                    logit_bias=bias,
                )
                for i in range(n)
            )
        )
        return sum(r.tokens for r in results) / (loop.time() - started)


@dataclass(frozen=True)
class Scenario:
    kind: str
    metric: str
    run: Callable[[str], Awaitable[float]]


def plan(kinds: tuple[str, ...]) -> list[Scenario]:
    scenarios = [
        Scenario("copy", "copy tok/s", lambda url: one_completion(url, COPY, 256)),
        Scenario("rewrite", "rewrite tok/s", lambda url: one_stream(url, REWRITE, 256)),
        Scenario("free", "free text tok/s", lambda url: one_stream(url, FREE, 256)),
    ]
    for n in (1, 4, 8):
        metric = "1 stream t=0.7, logit_bias tok/s" if n == 1 else f"{n} concurrent t=0.7 tok/s"
        scenarios.append(Scenario("streams", metric, lambda url, n=n: streams(url, n, 128)))
        if n == 1:
            # Hearth guesses for a sampled request only when it sends no seed (a seed
            # promises the same reply on every run, and a row decoded among guesses can
            # round differently); most chat clients send none.
            scenarios.append(
                Scenario(
                    "streams",
                    "1 stream t=0.7, logit_bias, no seed tok/s",
                    lambda url: streams(url, 1, 128, seeded=False),
                )
            )
    return [s for s in scenarios if s.kind in kinds]


def draft_counts(server: RunningServer) -> tuple[int, int] | None:
    """Hearth's guessed and taken tokens so far (None for a server that does not say)."""
    try:
        engine = httpx.get(f"{server.url}/health", timeout=10).json().get("engine") or {}
    except (httpx.HTTPError, ValueError):
        return None
    if "draft_tokens" not in engine:
        return None
    return engine["draft_tokens"], engine["accepted_draft_tokens"]


def measure(scenario: Scenario, server: RunningServer) -> tuple[float | None, float | None]:
    """The scenario's figure on one server, and the share of guesses taken during it."""
    before = draft_counts(server)
    try:
        value = asyncio.run(scenario.run(server.url))
    except Exception as error:  # noqa: BLE001 - a failed server gets "-" and the run goes on
        print(f"  {server.name}: failed: {error!r}", file=sys.stderr, flush=True)
        return None, None
    after = draft_counts(server)
    taken = None
    if before is not None and after is not None and after[0] > before[0]:
        taken = (after[1] - before[1]) / (after[0] - before[0])
    return value, taken


def servers_to_run(args: argparse.Namespace) -> dict[str, Callable[[ServerConfig], list[str]]]:
    draft = args.draft_model
    servers: dict[str, Callable[[ServerConfig], list[str]]] = {
        "hearth": (lambda c: [*hearth(c), "--draft-model", str(draft)]) if draft else hearth,
        "hearth-no-spec": lambda c: [*hearth(c), "--no-speculate"],
        # llama.cpp's flash attention is on by default. Off, llama-bench checks guessed rows
        # faster on a CPU, but through the server it measured slower: this keeps that honest.
        "hearth-no-flash-attn": lambda c: [*hearth(c), "--flash-attn", "off"],
        # Every token handed to its stream as it comes, as before the stream interval.
        "hearth-every-token": lambda c: [*hearth(c), "--stream-interval-ms", "0"],
    }
    binary = find_llama_server(args.llama_server)
    if binary is not None:
        plain = llama_server(binary)
        servers["llama-server"] = plain
        if draft:
            servers["llama-server-draft"] = lambda c: [
                *plain(c),
                "--spec-type",
                "draft-simple",
                "--spec-draft-model",
                str(draft),
            ]
        else:
            servers["llama-server-ngram"] = lambda c: [*plain(c), "--spec-type", "ngram-simple"]
    else:
        print("llama-server not found (--llama-server PATH): skipping it", file=sys.stderr)
    if args.only:
        servers = {k: v for k, v in servers.items() if k in args.only.split(",")}
    return servers


def print_table(
    runs: dict[str, list[dict[str, float | None]]], taken: dict[str, list[float]]
) -> None:
    names = list(runs)
    others = [n for n in names if n != "hearth"] if "hearth" in names else []
    header = f"| metric | {' | '.join(names)} |" + "".join(f" hearth / {o} |" for o in others)
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for metric in runs[names[0]][0]:
        cells = [_fmt(_median([r.get(metric) for r in runs[n]])) for n in names]
        line = f"| {metric} | {' | '.join(cells)} |"
        for other in others:
            ratios = [
                a[metric] / b[metric]
                for a, b in zip(runs["hearth"], runs[other], strict=False)
                if a.get(metric) and b.get(metric)
            ]
            line += f" {_ratio(ratios)} |"
        print(line)
    if taken:
        print("\nHearth's guessed tokens taken (median share per scenario):")
        for metric, shares in taken.items():
            print(f"  {metric}: {statistics.median(shares):.0%} ({len(shares)} runs)")


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _ratio(ratios: list[float]) -> str:
    if not ratios:
        return "-"
    text = f"{statistics.median(ratios):.2f}x"
    return text + (f" ({min(ratios):.2f}-{max(ratios):.2f})" if len(ratios) > 1 else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--ctx-per-slot", type=int, default=2048)
    parser.add_argument("--port", type=int, default=8785)
    parser.add_argument("--llama-server", default=None, help="path to llama.cpp's llama-server")
    parser.add_argument(
        "--draft-model",
        type=Path,
        default=None,
        help="a GGUF of the same vocabulary drafting for --model: Hearth and llama-server "
        "then run with it, against --model alone",
    )
    parser.add_argument("--only", default=None, help="comma-separated subset of servers")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="copy,rewrite,free,streams")
    args = parser.parse_args()

    from hearth.runtime.settings import bundled_model_path

    model = args.model or bundled_model_path()
    config = ServerConfig(model, args.port, args.threads, args.slots, args.ctx_per_slot)
    scenarios = plan(tuple(args.scenarios.split(",")))
    logs = Path(tempfile.mkdtemp(prefix="hearth-spec-bench-"))
    running: dict[str, RunningServer] = {}
    runs: dict[str, list[dict[str, float | None]]] = {}
    taken: dict[str, list[float]] = {}
    try:
        for offset, (name, command) in enumerate(servers_to_run(args).items()):
            port = args.port + offset
            running[name] = RunningServer(
                name, command(replace(config, port=port)), port, logs / f"{name}.log"
            )
            runs[name] = []
        for round_ in range(args.rounds):
            # Paired and alternating: drift in a shared machine's speed falls on all alike.
            order = list(running) if round_ % 2 == 0 else list(running)[::-1]
            for name in order:
                runs[name].append({})
            for scenario in scenarios:
                for name in order:
                    value, share = measure(scenario, running[name])
                    runs[name][-1][scenario.metric] = value
                    if name == "hearth" and share is not None:
                        taken.setdefault(scenario.metric, []).append(share)
                    shown = "-" if value is None else f"{value:.1f}"
                    extra = "" if share is None else f", {share:.0%} of guesses taken"
                    print(
                        f"round {round_ + 1}, {name}: {scenario.metric} {shown}{extra}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        for server in running.values():
            server.stop()
    print(
        f"\nmodel {model.name}, threads {args.threads}, slots {args.slots}, "
        f"median of {args.rounds} round(s), paired alternating\n"
    )
    print_table(runs, taken)
    return 0


if __name__ == "__main__":
    sys.exit(main())
