"""A model whose layers live on two `hearth worker` processes (llama.cpp RPC) on loopback,
served beside a local model by a real `hearth serve`.

What a user relies on: the split model answers as the local one does; /health shows where
its layers are; a worker that dies costs that model's requests a fast 503 naming the worker
(never a hang, never the server), the other model keeps serving, and the split model comes
back once its worker does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hearth.engine.errors import WorkerUnreachable
from hearth.engine.rpc import hello
from hearth.runtime.settings import bundled_model_path
from tests.conftest import RunningServer, start_server
from tests.deploy.cluster import free_port, wait_for


@dataclass
class Worker:
    port: int
    log_path: Path
    process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [sys.executable, "-m", "hearth", "worker", "--port", str(self.port)]
        command += ["--threads", "1"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.answers, f"worker {self.endpoint}")

    def answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"worker exited:\n{self.log_path.read_text()}")
        try:
            hello(self.endpoint, timeout=2)
        except WorkerUnreachable:
            return False
        return True

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Worker]]:
    folder = tmp_path_factory.mktemp("workers")
    started = [Worker(free_port(), folder / f"worker-{i}.log") for i in range(2)]
    try:
        for worker in started:
            worker.start()
        yield started
    finally:
        for worker in started:
            worker.stop()


@pytest.fixture(scope="module")
def split_server(
    tmp_path_factory: pytest.TempPathFactory, workers: list[Worker]
) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("split")
    model = bundled_model_path()
    endpoints = ",".join(worker.endpoint for worker in workers)
    (folder / "hearth.toml").write_text(
        f'[[models]]\nid = "local"\npath = "{model}"\n\n'
        f'[[models]]\nid = "split"\npath = "{model}"\nrpc = "{endpoints}"\n'
    )
    running = start_server(
        folder, "--config", "hearth.toml", "--n-ctx", "1024", "--parallel", "2",
        "--threads", "1", "--max-loaded-models", "2", "--no-web",
    )  # fmt: skip
    yield running
    running.stop()


def ask(server: RunningServer, model: str, **extra: object) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
        "max_tokens": 24,
        "temperature": 0,
        **extra,
    }
    return httpx.post(f"{server.api}/chat/completions", json=body, timeout=300)


def test_a_model_split_over_two_workers_answers_as_the_local_one(split_server: RunningServer):
    split, local = ask(split_server, "split"), ask(split_server, "local")
    assert split.status_code == 200, split.text
    assert local.status_code == 200, local.text
    reply = split.json()["choices"][0]["message"]["content"]
    assert reply and reply == local.json()["choices"][0]["message"]["content"]


def test_health_lists_each_device_of_the_split_model_with_its_memory(
    split_server: RunningServer, workers: list[Worker]
):
    assert ask(split_server, "split").status_code == 200
    health = httpx.get(f"{split_server.url}/health").json()
    devices = health["models"]["split"]["devices"]
    assert [d["description"] for d in devices[1:]] == [w.endpoint for w in workers]
    assert devices[0]["name"] == "CPU"  # the input layer stays local
    assert all(d["total_mib"] > 0 and 0 <= d["free_mib"] <= d["total_mib"] for d in devices)
    assert "devices" not in health["models"]["local"]


def stream_until_cut(server: RunningServer, worker: Worker) -> str:
    """A long streamed reply from the split model, its worker killed after the first token;
    the whole body as the client got it."""
    body = {
        "model": "split",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": 900,
        "stream": True,
        "logit_bias": {"2": -100},  # no end of sequence: the reply runs until the cut
    }
    lines = []
    with httpx.stream("POST", f"{server.api}/chat/completions", json=body, timeout=300) as reply:
        for line in reply.iter_lines():
            lines.append(line)
            if len(lines) == 3:
                worker.kill()
    return "\n".join(lines)


def test_a_dead_worker_fails_its_model_fast_and_the_model_returns_with_it(
    split_server: RunningServer, workers: list[Worker]
):
    assert ask(split_server, "split").status_code == 200
    victim = workers[1]
    body = stream_until_cut(split_server, victim)
    assert '"error"' in body and "data: [DONE]" not in body, body[-2000:]
    assert victim.endpoint in body, body[-2000:]  # the error event names the worker

    # The server lives; the other model serves; the split one answers 503 naming the worker.
    assert ask(split_server, "local").status_code == 200
    refused = ask(split_server, "split")
    assert refused.status_code == 503, refused.text
    assert victim.endpoint in refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "rpc_worker_unreachable"
    assert "Retry-After" in refused.headers
    health = httpx.get(f"{split_server.url}/health")
    assert health.status_code == 200
    assert health.json()["models"]["split"]["state"] == "failed"

    victim.start()  # the same address again
    back = ask(split_server, "split")
    assert back.status_code == 200, back.text
    assert httpx.get(f"{split_server.url}/health").json()["models"]["split"]["state"] == "loaded"


def test_a_default_model_whose_worker_is_not_there_fails_start_up_in_one_line(tmp_path: Path):
    absent = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "hearth", "serve", "--rpc", absent, "--no-web"]
    command += ["--port", str(free_port())]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("hearth: ") and absent in last and "unreachable" in last, done.stderr
