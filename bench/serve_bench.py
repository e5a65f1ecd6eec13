"""Benchmark Hearth against llama-cpp-python's server and llama.cpp's llama-server.

Starts the servers side by side on the same model, threads, slots and context, drives each
over HTTP with streamed chat completions while the others sit idle, and prints one table:
each server's medians, and Hearth's ratio to each peer as the median of per-round ratios.
Not a test: it asserts nothing and prints what it measured.

    python bench/serve_bench.py [--threads 2] [--slots 4] [--llama-server PATH] [--rounds N]
                                [--only hearth,llama-server] [--scenarios single,concurrent]

Scenarios (each server, same requests):
  single stream   decode tokens/s of one 128-token stream (best of 3)
  N concurrent    total tokens/s of N simultaneous streams; streams cut short are counted
  TTFT cold/warm  time to first token on a ~1,500-token conversation, then on its next turn
  4 users         mean time to first token when 4 users take turns in their own long chats
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import stream_chat
from servers import (
    RunningServer,
    ServerConfig,
    find_llama_server,
    hearth,
    llama_cpp_python,
    llama_server,
)

STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake."}]
FILLER = (
    "I have been thinking about the garden again. The tomatoes came up late this year, the "
    "beans climbed the fence, and the neighbour's cat keeps sleeping in the herb bed. "
)


def client_for(timeout: float) -> httpx.AsyncClient:
    # A new connection per request: llama-server closes idle keep-alive connections, and a
    # request sent on one just as it closes fails through no fault of the server.
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=timeout, limits=limits)


def conversation(tokens_approx: int) -> list[dict]:
    """A long chat: a unique opening (so no cache has it), then many exchanges."""
    messages = [{"role": "system", "content": f"Chat {secrets.token_hex(4)}. Be brief."}]
    # One exchange (a note and its reply, with the chat template's markup) is about 60
    # tokens for SmolLM2's tokenizer: 1,500 asks for 25 exchanges, 1,522 tokens in all.
    turns = max(1, tokens_approx // 60)
    for i in range(turns):
        messages.append({"role": "user", "content": f"Note {i}: {FILLER}"})
        messages.append({"role": "assistant", "content": "Noted. The garden sounds lively."})
    messages.append({"role": "user", "content": "What should I plant next?"})
    return messages


async def single_stream(url: str, tokens: int) -> float:
    async with client_for(600) as client:
        rates = [(await stream_chat(client, url, STORY, tokens)).decode_rate for _ in range(3)]
    return max(rates)


async def concurrent(url: str, n: int, tokens: int) -> tuple[float, int]:
    async with client_for(600) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(stream_chat(client, url, STORY, tokens, temperature=0.8, seed=i) for i in range(n)),
            return_exceptions=True,
        )
        wall = loop.time() - started
    done = [r for r in results if not isinstance(r, BaseException) and r.complete]
    return sum(r.tokens for r in done) / wall, n - len(done)


async def ttft_cold_warm(url: str) -> tuple[float, float]:
    chat = conversation(1500)
    async with client_for(600) as client:
        cold = await stream_chat(client, url, chat, 16)
        chat += [{"role": "assistant", "content": cold.text}, {"role": "user", "content": "And?"}]
        warm = await stream_chat(client, url, chat, 16)
    return cold.ttft, warm.ttft


async def users_taking_turns(url: str, users: int, rounds: int = 2) -> float:
    chats = [conversation(1500) for _ in range(users)]
    waits = []
    async with client_for(900) as client:
        for round_ in range(rounds + 1):
            for chat in chats:
                result = await stream_chat(client, url, chat, 16)
                if round_ > 0:  # the first round only builds the conversations
                    waits.append(result.ttft)
                chat += [
                    {"role": "assistant", "content": result.text},
                    {"role": "user", "content": f"Tell me more ({round_})."},
                ]
    return statistics.mean(waits)


@dataclass(frozen=True)
class Scenario:
    """One load, and the figures it yields (in this order)."""

    kind: str  # what --scenarios selects it by
    metrics: tuple[str, ...]
    run: Callable[[str], Awaitable[float | tuple[float, ...]]]


SCENARIO_KINDS = ("single", "concurrent", "ttft", "users")


def plan(tokens: int, levels: list[int], kinds: tuple[str, ...] = SCENARIO_KINDS) -> list[Scenario]:
    scenarios = [
        Scenario("single", ("single stream tok/s",), lambda url: single_stream(url, tokens))
    ]
    for n in levels:
        scenarios.append(
            Scenario(
                "concurrent",
                (f"{n} concurrent tok/s", f"{n} concurrent cut short"),
                lambda url, n=n: concurrent(url, n, tokens),
            )
        )
    scenarios.append(Scenario("ttft", ("TTFT cold s", "TTFT warm s"), ttft_cold_warm))
    scenarios.append(Scenario("users", ("4 users TTFT s",), lambda url: users_taking_turns(url, 4)))
    return [scenario for scenario in scenarios if scenario.kind in kinds]


def measure(scenario: Scenario, server: RunningServer) -> dict[str, float | None]:
    # A server that fails a scenario gets "-" there; the run goes on with the next.
    try:
        values = asyncio.run(scenario.run(server.url))
    except Exception as error:  # noqa: BLE001
        print(f"  {server.name}: failed: {error!r}", file=sys.stderr, flush=True)
        return dict.fromkeys(scenario.metrics)
    return dict(
        zip(scenario.metrics, values if isinstance(values, tuple) else (values,), strict=False)
    )


Rounds = list[dict[str, float | None]]


def print_table(runs: dict[str, Rounds]) -> None:
    """Each server's median per figure, and Hearth's ratio to each peer.

    A ratio is the median of the per-round ratios, with their range: the two figures of a
    round were measured a minute apart, so drift in the machine's speed cancels out of it.
    """
    names = list(runs)
    others = [n for n in names if n != "hearth"] if "hearth" in runs else []
    header = f"| metric | {' | '.join(names)} |" + "".join(f" hearth / {o} |" for o in others)
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for metric in runs[names[0]][0]:
        cells = [_fmt(_median([r.get(metric) for r in runs[n]])) for n in names]
        line = f"| {metric} | {' | '.join(cells)} |"
        for other in others:
            line += f" {_paired_ratio(metric, runs['hearth'], runs[other])} |"
        print(line)


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def _paired_ratio(metric: str, ours: Rounds, theirs: Rounds) -> str:
    if "cut short" in metric:
        return "-"
    # Higher is better for rates; for times, the ratio says how many times faster we are.
    rate = "tok/s" in metric
    ratios = []
    for a, b in zip(ours, theirs, strict=False):
        mine, peer = a.get(metric), b.get(metric)
        if mine and peer:
            ratios.append(mine / peer if rate else peer / mine)
    if not ratios:
        return "-"
    text = f"{statistics.median(ratios):.2f}x" + ("" if rate else " faster")
    if len(ratios) > 1:
        text += f" ({min(ratios):.2f}-{max(ratios):.2f})"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--ctx-per-slot", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--levels", default="1,2,4,8")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--llama-server", default=None, help="path to llama.cpp's llama-server")
    parser.add_argument("--only", default=None, help="comma-separated subset of servers")
    parser.add_argument(
        "--rounds", type=int, default=1, help="run every scenario on every server N times"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIO_KINDS),
        help=f"comma-separated subset of {', '.join(SCENARIO_KINDS)}",
    )
    args = parser.parse_args()

    from hearth.runtime.settings import bundled_model_path

    model = args.model or bundled_model_path()
    config = ServerConfig(model, args.port, args.threads, args.slots, args.ctx_per_slot)
    servers: dict[str, Callable[[ServerConfig], list[str]]] = {"hearth": hearth}
    try:
        import llama_cpp.server  # noqa: F401

        servers["llama-cpp-python"] = llama_cpp_python
    except ImportError:
        print("llama-cpp-python[server] not installed: skipping it", file=sys.stderr)
    binary = find_llama_server(args.llama_server)
    if binary is not None:
        servers["llama-server"] = llama_server(binary)
    else:
        print("llama-server not found (--llama-server PATH): skipping it", file=sys.stderr)
    if args.only:
        servers = {k: v for k, v in servers.items() if k in args.only.split(",")}

    levels = [int(n) for n in args.levels.split(",")]
    kinds = tuple(args.scenarios.split(","))
    unknown = set(kinds) - set(SCENARIO_KINDS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    scenarios = plan(args.tokens, levels, kinds)
    logs = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    # All servers run side by side, each idle while another is measured. Each scenario is
    # run on one server and then at once on the next, and the order flips every round, so
    # that drift in a shared machine's speed falls on all of them alike.
    running: dict[str, RunningServer] = {}
    try:
        for offset, (name, command) in enumerate(servers.items()):
            port = args.port + offset
            running[name] = RunningServer(
                name, command(replace(config, port=port)), port, logs / f"{name}.log"
            )
        runs: dict[str, Rounds] = {name: [] for name in running}
        for round_ in range(args.rounds):
            order = list(running) if round_ % 2 == 0 else list(running)[::-1]
            for name in order:
                runs[name].append({})
            for scenario in scenarios:
                for name in order:
                    figures = measure(scenario, running[name])
                    runs[name][-1].update(figures)
                    shown = ", ".join(f"{k} {_fmt(v)}" for k, v in figures.items())
                    print(f"round {round_ + 1}, {name}: {shown}", file=sys.stderr, flush=True)
    finally:
        for server in running.values():
            server.stop()
    print(
        f"\nmodel {model.name}, threads {args.threads}, slots {args.slots}, "
        f"{args.ctx_per_slot} tokens per slot, {args.tokens}-token streams, "
        f"median of {args.rounds} round(s)\n"
    )
    print_table(runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
