"""End to end: a GGUF whose chat template never ends, served by a real `hearth serve`."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from hearth.runtime.settings import bundled_model_path
from tests.conftest import start_server

HANGS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture(scope="module")
def hostile_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model with nested range(100000) loops as its chat template."""
    path = tmp_path_factory.mktemp("hostile") / "hostile.gguf"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gguf.scripts.gguf_new_metadata",
            "--force",
            "--chat-template",
            HANGS,
            str(bundled_model_path()),
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path


def test_hanging_template_fails_its_request_keeps_serving_and_sigterm_exits(tmp_path, hostile_gguf):
    """Such a template stalled /health for 70 s and the server ignored SIGTERM."""
    server = start_server(tmp_path, "--model", str(hostile_gguf), "--n-ctx", "512")
    answer: dict[str, httpx.Response] = {}

    def ask() -> None:
        body = {"model": "hostile", "messages": [{"role": "user", "content": "Hi"}]}
        answer["chat"] = httpx.post(f"{server.api}/chat/completions", json=body, timeout=120)

    asking = threading.Thread(target=ask)
    asking.start()
    try:
        health_while_rendering = []
        while asking.is_alive() and len(health_while_rendering) < 3:
            health_while_rendering.append(httpx.get(f"{server.url}/health", timeout=60))
        assert asking.is_alive()  # the render is still running, and /health answered
        assert all(r.status_code == 200 for r in health_while_rendering)
        server.process.send_signal(signal.SIGTERM)
        asking.join(120)
        assert server.process.wait(timeout=120) == 0
    finally:
        server.stop()
    error = answer["chat"].json()["error"]
    assert answer["chat"].status_code == 500
    assert error["code"] == "chat_template_failed"
    assert "to render" in error["message"]
