"""What the HTTP layer costs: one stream's decode speed in process and through `hearth serve`.

Three runs of the same greedy completion (same model, threads and max_tokens):
  llama_cpp.Llama     llama-cpp-python's high-level API, streaming, in process
  hearth engine       Hearth's LlamaEngine in process, no HTTP
  hearth over HTTP    `hearth serve` driven over SSE from another process
Decode tokens/s is counted from the first streamed token to the last. Not a test.

    python bench/http_overhead.py [--threads 2] [--tokens 256] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import RunningServer, ServerConfig, hearth

PROMPT = "Once upon a time, in a village by the sea, there lived an old fisherman who"


def rate(stamps: list[float]) -> float:
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def llama_cpp_rate(model: Path, threads: int, tokens: int) -> float:
    import llama_cpp

    from hearth.engine.cpu import keep_amx_off_by_default

    keep_amx_off_by_default()  # the same kernels as the server it is compared with
    llm = llama_cpp.Llama(str(model), n_ctx=1024, n_threads=threads, verbose=False)
    stamps = []
    for _ in llm.create_completion(PROMPT, max_tokens=tokens, temperature=0, stream=True):
        stamps.append(time.perf_counter())
    return rate(stamps)


async def engine_rate(model: Path, threads: int, tokens: int) -> float:
    from hearth.engine.base import GenerationRequest, Prompt, SamplingParams, TextDelta
    from hearth.engine.llama import LlamaEngine
    from hearth.runtime.settings import ModelSettings

    settings = ModelSettings.load(
        {"model": str(model), "threads": threads, "n_ctx": 1024, "parallel": 1}
    )
    engine = LlamaEngine(settings.engine_options(model, "bench"))
    await engine.start()
    try:
        request = GenerationRequest(
            Prompt(PROMPT), max_tokens=tokens, sampling=SamplingParams(temperature=0)
        )
        stamps = [
            time.perf_counter() async for e in engine.submit(request) if isinstance(e, TextDelta)
        ]
    finally:
        await engine.close()
    return rate(stamps)


def http_rate(url: str, tokens: int) -> float:
    body = {
        "model": "bench",
        "prompt": PROMPT,
        "max_tokens": tokens,
        "temperature": 0,
        "stream": True,
    }
    stamps = []
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["text"]:
                stamps.append(time.perf_counter())
    return rate(stamps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    from hearth.runtime.settings import bundled_model_path

    model = args.model or bundled_model_path()
    results: dict[str, list[float]] = {
        "llama_cpp.Llama": [],
        "hearth engine": [],
        "hearth over HTTP": [],
    }
    config = ServerConfig(model, args.port, args.threads, 1, 1024)
    log = Path(tempfile.mkdtemp(prefix="hearth-overhead-")) / "serve.log"
    # Interleave the three so drift in machine load hits each alike.
    for _ in range(args.repeat):
        results["llama_cpp.Llama"].append(llama_cpp_rate(model, args.threads, args.tokens))
        results["hearth engine"].append(asyncio.run(engine_rate(model, args.threads, args.tokens)))
        server = RunningServer("hearth", hearth(config), args.port, log)
        try:
            http_rate(server.url, 16)  # warm-up
            results["hearth over HTTP"].append(http_rate(server.url, args.tokens))
        finally:
            server.stop()
    print(
        f"model {model.name}, threads {args.threads}, {args.tokens} tokens, "
        f"median of {args.repeat}\n"
    )
    print("| path | decode tokens/s (median) | min | max |")
    print("|---|---|---|---|")
    medians = {}
    for name, values in results.items():
        medians[name] = statistics.median(values)
        print(f"| {name} | {medians[name]:.1f} | {min(values):.1f} | {max(values):.1f} |")
    http, engine = medians["hearth over HTTP"], medians["hearth engine"]
    print(f"\nHTTP layer cost vs the engine in process: {100 * (1 - http / engine):+.1f}%")
    print(
        f"hearth over HTTP vs llama_cpp.Llama in process: "
        f"{100 * (http / medians['llama_cpp.Llama'] - 1):+.1f}%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
