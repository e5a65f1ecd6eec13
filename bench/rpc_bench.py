"""The bundled model split over two RPC workers on loopback against the same model local:
decode tokens/s, and the bytes that cross the network per generated token.

    python bench/rpc_bench.py --tokens 64 --rounds 3

Two `hearth worker` processes (1 thread each) hold all the model's layers (split by their
free memory: about half each); the engine runs in this process as `hearth serve --rpc`
runs it, greedy, end of sequence banned so that every reply has --tokens tokens. Local
runs use 1 and 2 threads. Bytes are the kernel's count for the workers' connections
(`ss -ti`: bytes_received + bytes_sent), per token the difference between a reply of
--tokens tokens and one of 1 token, divided by the tokens between. Prints figures; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

from hearth.engine.base import EngineOptions, GenerationRequest, Prompt, SamplingParams
from hearth.engine.errors import WorkerUnreachable
from hearth.engine.llama import LlamaEngine
from hearth.engine.rpc import hello
from hearth.runtime.settings import bundled_model_path

PROMPT = "<|im_start|>user\nTell me about the sea.<|im_end|>\n<|im_start|>assistant\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_worker(port: int) -> subprocess.Popen:
    command = [sys.executable, "-m", "hearth", "worker", "--port", str(port), "--threads", "1"]
    worker = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            hello(f"127.0.0.1:{port}", timeout=2)
            return worker
        except WorkerUnreachable:
            time.sleep(0.2)
    raise TimeoutError(f"worker on {port} did not start")


def socket_bytes(ports: list[int]) -> int:
    """Bytes received plus sent on the established connections of the workers' ports."""
    if not ports:
        return 0
    match = " or ".join(f"sport = :{port}" for port in ports)
    shown = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( {match} )"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sum(
        int(field.split(":")[1])
        for field in shown.split()
        if field.startswith(("bytes_received:", "bytes_sent:"))
    )


async def reply(engine: LlamaEngine, tokens: int) -> tuple[int, float]:
    """Tokens generated, and decode tokens/s after the first token."""
    sampling = SamplingParams(temperature=0, logit_bias=((2, -100.0),))
    request = GenerationRequest(Prompt(PROMPT, parse_special=True), max_tokens=tokens,
                                sampling=sampling)  # fmt: skip
    first = None
    count = 0
    async for event in engine.submit(request):
        if first is None:
            first = time.perf_counter()
        count = getattr(event, "completion_tokens", count)
    assert first is not None
    elapsed = time.perf_counter() - first
    return count, (count - 1) / elapsed if elapsed > 0 else 0.0


async def run(options: EngineOptions, tokens: int, rounds: int, ports: list[int]) -> None:
    engine = LlamaEngine(options)
    started = time.perf_counter()
    before_load = socket_bytes(ports)
    await engine.start()
    load = time.perf_counter() - started
    label = "RPC, 2 workers x 1 thread" if options.rpc else f"local, {options.threads} thread(s)"
    moved = (
        f", {(socket_bytes(ports) - before_load) / 2**20:.0f} MiB sent to the workers"
        if ports
        else ""
    )
    print(f"{label}: load {load:.2f} s{moved}")
    rates, per_token = [], []
    await reply(engine, tokens)  # warm
    for _ in range(rounds):
        before = socket_bytes(ports)
        await reply(engine, 1)
        one = socket_bytes(ports) - before
        before = socket_bytes(ports)
        count, rate = await reply(engine, tokens)
        many = socket_bytes(ports) - before
        rates.append(rate)
        if ports:
            per_token.append((many - one) / (count - 1))
    each = ", ".join(f"{r:.1f}" for r in rates)
    line = f"  decode {statistics.median(rates):.1f} tok/s (rounds: {each})"
    if per_token:
        line += f"; {statistics.median(per_token) / 1024:.1f} KiB over the network per token"
    print(line)
    await engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = bundled_model_path()
    base = EngineOptions(path=model, name="bench", n_ctx=1024, n_seq=1)
    print(f"load average before: {os.getloadavg()}")
    for threads in (1, 2):
        options = EngineOptions(**{**base.__dict__, "threads": threads})
        asyncio.run(run(options, args.tokens, args.rounds, []))
    ports = [free_port(), free_port()]
    workers = [start_worker(port) for port in ports]
    try:
        rpc = tuple(f"127.0.0.1:{port}" for port in ports)
        options = EngineOptions(**{**base.__dict__, "threads": 1, "rpc": rpc})
        asyncio.run(run(options, args.tokens, args.rounds, ports))
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
