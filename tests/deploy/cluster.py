"""Real `hearth serve` replicas behind Debian's HAProxy on loopback, with deploy/haproxy.cfg.

The balancer runs the shipped configuration with two changes only: it binds a free
loopback port, and the Compose `server-template` line becomes one `server` line per
replica. A stats page is added so that a test can wait for HAProxy to see a replica up or
down (an event, not a sleep). The benchmarks start the same cluster.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = REPO / "deploy" / "haproxy.cfg"
# This machine's 2 cores are shared with other work: starting a replica can take a minute.
START_DEADLINE = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], bool], what: str, deadline: float = START_DEADLINE, every: float = 0.1
) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(every)
    raise TimeoutError(f"gave up waiting for {what}")


@dataclass
class Replica:
    """One `hearth serve`, restartable on the same port (as a rolling restart does)."""

    name: str
    port: int
    workdir: Path
    args: Sequence[str]
    cpus: str | None = None  # pin to these cores (taskset), for the benchmark
    process: subprocess.Popen | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        command = [sys.executable, "-m", "hearth", "serve", "--port", str(self.port)]
        command += ["--replica-id", self.name, "--no-web", *self.args]
        if self.cpus is not None:
            command = ["taskset", "-c", self.cpus, *command]
        log = (self.workdir / f"{self.name}-{self.starts}.log").open("wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir
        )
        log.close()

    def healthy(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"replica {self.name} exited:\n{self.log()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_healthy(self) -> None:
        wait_for(self.healthy, f"replica {self.name} to answer /health")

    def log(self) -> str:
        path = self.workdir / f"{self.name}-{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def terminate(self) -> int:
        """SIGTERM (a drain), and the exit status once it has drained."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Balancer:
    port: int
    stats_port: int
    workdir: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def configure(self, replicas: Sequence[Replica]) -> Path:
        text = HAPROXY_CONFIG.read_text()
        servers = "\n".join(f"    server {r.name} 127.0.0.1:{r.port} check" for r in replicas)
        lines = []
        for line in text.splitlines():
            if line.strip().startswith("server-template "):
                lines.append(servers)
            elif line.strip() == "bind :8080":
                lines.append(f"    bind 127.0.0.1:{self.port}")
            else:
                lines.append(line)
        lines += [
            "",
            "frontend stats",
            f"    bind 127.0.0.1:{self.stats_port}",
            "    stats enable",
            "    stats uri /stats",
        ]
        path = self.workdir / "haproxy.cfg"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, replicas: Sequence[Replica]) -> None:
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        config = self.configure(replicas)
        log = (self.workdir / "haproxy.log").open("wb")
        self.process = subprocess.Popen(
            [haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        wait_for(lambda: self.up() == {r.name for r in replicas}, "HAProxy to see every replica")

    def states(self) -> dict[str, str]:
        """Each server's state as HAProxy's stats page has it (UP, DOWN, ...)."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"haproxy exited:\n{self.log()}")
        try:
            page = httpx.get(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=2).text
        except httpx.TransportError:
            return {}
        rows = csv.DictReader(io.StringIO(page.lstrip("# ")))
        return {
            row["svname"]: row["status"].split()[0]
            for row in rows
            if row["pxname"] == "replicas" and row["svname"] not in ("FRONTEND", "BACKEND")
        }

    def up(self) -> set[str]:
        return {name for name, status in self.states().items() if status == "UP"}

    def log(self) -> str:
        path = self.workdir / "haproxy.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@dataclass
class Cluster:
    replicas: list[Replica]
    balancer: Balancer
    failures: list[str] = field(default_factory=list)

    def replica(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    def stop(self) -> None:
        self.balancer.stop()
        for replica in self.replicas:
            replica.stop()


def start_cluster(
    workdir: Path, count: int, args: Sequence[str], cpus: Sequence[str | None] | None = None
) -> Cluster:
    """`count` replicas started together, then HAProxy once all answer /health."""
    replicas = [
        Replica(f"r{i + 1}", free_port(), workdir, args, cpus[i] if cpus else None)
        for i in range(count)
    ]
    balancer = Balancer(free_port(), free_port(), workdir)
    cluster = Cluster(replicas, balancer)
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_healthy()
        balancer.start(replicas)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def chat(
    client: httpx.Client,
    messages: list[dict[str, str]],
    *,
    key: str | None = None,
    user: str | None = None,
    max_tokens: int = 16,
) -> httpx.Response:
    body: dict[str, object] = {
        "model": "smollm2",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    if key is not None:
        body["prompt_cache_key"] = key
    if user is not None:
        body["user"] = user
    return client.post("/v1/chat/completions", json=body)
