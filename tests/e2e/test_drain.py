"""SIGTERM drains: running streams finish or end cleanly, new requests get 503, exit 0."""

from __future__ import annotations

import json
import signal
import threading
import time

import httpx
import pytest

from tests.conftest import start_server


def stream(url: str, model: str, max_tokens: int, out: list, started: threading.Event) -> None:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0,
    }
    events = []
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[len("data: "):])
                if len(events) == 2:  # the role chunk, then the first token: it is generating
                    started.set()
    out.append(events)


def finish_reasons(events: list[str]) -> list[str]:
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")
            if c["choices"][0]["finish_reason"]]


@pytest.mark.parametrize("cut", [False, True], ids=["finish", "cut-at-timeout"])
def test_sigterm_drains_running_streams_and_exits_0(tmp_path, cut):
    """SIGTERM closed 4 running streams mid-body: no finish_reason, no error event."""
    timeout = "2" if cut else "60"
    server = start_server(tmp_path, "--parallel", "2", "--drain-timeout", timeout)
    model = httpx.get(f"{server.api}/models").json()["data"][0]["id"]
    assert model
    results: list = []
    started = [threading.Event() for _ in range(2)]
    threads = [
        threading.Thread(target=stream, args=(server.url, model, 2000 if cut else 48, results, s))
        for s in started
    ]
    for thread in threads:
        thread.start()
    assert all(s.wait(timeout=60) for s in started)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    refused = httpx.post(f"{server.api}/chat/completions", json={}, timeout=10)
    assert refused.status_code == 503 and "retry-after" in refused.headers
    # The refusal has an id and an access line like any answer (the guard ran outside both).
    refused_id = refused.headers["x-request-id"]
    assert httpx.get(f"{server.url}/health", timeout=10).json() == {"status": "draining"}
    for thread in threads:
        thread.join(timeout=90)
    assert server.process.wait(timeout=30) == 0, server.log()
    # Refused before routing, so its route is "unmatched", as for any request no route took.
    assert f"request_id={refused_id} method=POST route=unmatched status=503" in server.log()
    assert len(results) == 2
    for events in results:
        assert len(finish_reasons(events)) == 1, events[-3:]
        if cut:
            assert json.loads(events[-1])["error"]["code"] == "server_shutting_down"
        else:
            assert events[-1] == "[DONE]"


def test_second_signal_exits_at_once(tmp_path):
    server = start_server(tmp_path, "--parallel", "1", "--drain-timeout", "120")
    model = httpx.get(f"{server.api}/models").json()["data"][0]["id"]
    started, results = threading.Event(), []

    def cut_stream() -> None:
        # The second signal does not wait for the stream: its connection is simply closed.
        with pytest.raises(httpx.RemoteProtocolError):
            stream(server.url, model, 4000, results, started)

    thread = threading.Thread(target=cut_stream)
    thread.start()
    assert started.wait(timeout=60)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    assert server.process.poll() is None  # draining, not gone
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=20)  # well inside the 120 s drain
    thread.join(timeout=20)
    assert not results  # the stream never completed
