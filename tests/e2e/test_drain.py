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
                events.append(line[len("data: ") :])
                if len(events) == 2:  # the role chunk, then the first token: it is generating
                    started.set()
    out.append(events)


def finish_reasons(events: list[str]) -> list[str]:
    chunks = [json.loads(e) for e in events if e != "[DONE]"]
    return [
        c["choices"][0]["finish_reason"]
        for c in chunks
        if c.get("choices")
        if c["choices"][0]["finish_reason"]
    ]


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


def _sse_events(response: httpx.Response, started: threading.Event) -> list[tuple[str, str]]:
    """(event name, data) of every server-sent event, as they arrive."""
    events, name = [], "message"
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, line[len("data: ") :]))
            name = "message"
            if len(events) == 4:  # past the opening events: it is generating
                started.set()
    return events


STREAMS = {
    "completions": {"prompt": "Once upon a time, a dragon", "max_tokens": 4000, "stream": True},
    "responses": {
        "input": "Write a very long story about a dragon.",
        "max_output_tokens": 4000,
        "stream": True,
    },
    "messages": {
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": 4000,
        "stream": True,
    },
}


@pytest.mark.parametrize("endpoint", list(STREAMS))
def test_drain_timeout_ends_every_kind_of_stream_with_its_terminal_event(tmp_path, endpoint):
    """A /v1/responses stream cut by SIGTERM ended torn, on a text delta, with no terminal
    event: the drain was checked by the chat stream writer only."""
    server = start_server(tmp_path, "--parallel", "1", "--drain-timeout", "2")
    model = httpx.get(f"{server.api}/models").json()["data"][0]["id"]
    started, results = threading.Event(), []

    def run() -> None:
        body = {"model": model, "temperature": 0, **STREAMS[endpoint]}
        with httpx.stream("POST", f"{server.api}/{endpoint}", json=body, timeout=120) as response:
            results.append(_sse_events(response, started))

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(timeout=60)
    server.process.send_signal(signal.SIGTERM)
    thread.join(timeout=90)
    assert server.process.wait(timeout=30) == 0, server.log()
    (events,) = results
    if endpoint == "responses":
        kinds = [name for name, _ in events]
        assert kinds[-1] == "response.incomplete", kinds[-4:]
        assert kinds.count("response.incomplete") == 1 and "response.completed" not in kinds
        error = next(json.loads(data) for name, data in events if name == "error")
        assert error["code"] == "server_shutting_down"
        last = json.loads(events[-1][1])["response"]
        assert last["status"] == "incomplete" and last["output"][0]["content"][0]["text"]
    elif endpoint == "messages":
        # Ended as max_tokens ends a message, then the error instead of message_stop.
        kinds = [name for name, _ in events]
        assert kinds[-2:] == ["message_delta", "error"] and "message_stop" not in kinds
        assert json.loads(events[-2][1])["delta"]["stop_reason"] == "max_tokens"
        assert json.loads(events[-1][1])["error"]["type"] == "overloaded_error"
    else:
        chunks = [json.loads(data) for _, data in events]
        reasons = [
            c["choices"][0]["finish_reason"]
            for c in chunks
            if c.get("choices") and c["choices"][0]["finish_reason"]
        ]
        assert reasons == ["length"]
        assert chunks[-1]["error"]["code"] == "server_shutting_down"
