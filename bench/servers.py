"""Servers the benchmarks drive: Hearth and its peers, started the same way.

Each entry turns (model, port, threads, slots, context per slot) into a command line. All
serve the model under the id `bench`, so one load generator drives them all.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True)
class ServerConfig:
    model: Path
    port: int
    threads: int
    slots: int
    ctx_per_slot: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hearth(c: ServerConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hearth",
        "serve",
        "--model",
        str(c.model),
        "--alias",
        "bench",
        "--port",
        str(c.port),
        "--threads",
        str(c.threads),
        "--parallel",
        str(c.slots),
        "--n-ctx",
        str(c.ctx_per_slot),
        "--no-web",
        "--log-level",
        "warning",
        # A library of its own: the prompt cache on disk starts empty, as a peer's would,
        # and the user's is left alone. (A later --library-dir, as restart_cache_bench
        # gives, wins.)
        "--library-dir",
        tempfile.mkdtemp(prefix="hearth-bench-library-"),
    ]


def llama_cpp_python(c: ServerConfig) -> list[str]:
    # One llama.cpp context for everyone: that is how its server works.
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(c.model),
        "--model_alias",
        "bench",
        "--port",
        str(c.port),
        "--n_threads",
        str(c.threads),
        "--n_threads_batch",
        str(c.threads),
        "--n_ctx",
        str(c.ctx_per_slot),
        "--verbose",
        "False",
    ]


def llama_server(binary: Path) -> Callable[[ServerConfig], list[str]]:
    def command(c: ServerConfig) -> list[str]:
        return [
            str(binary),
            "-m",
            str(c.model),
            "--port",
            str(c.port),
            "-t",
            str(c.threads),
            "-tb",
            str(c.threads),
            "-np",
            str(c.slots),
            "-c",
            str(c.ctx_per_slot * c.slots),
            "--alias",
            "bench",
            "--log-disable",
        ]

    return command


def find_llama_server(explicit: str | None) -> Path | None:
    candidates = [explicit, shutil.which("llama-server")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


class RunningServer:
    def __init__(self, name: str, command: list[str], port: int, log: Path) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self._log = log.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(log)

    def _wait_ready(self, log: Path) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited:\n{log.read_text(errors='replace')[-2000:]}"
                )
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._log.close()
