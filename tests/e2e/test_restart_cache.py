"""The prompt cache on disk through a real `hearth serve`: a conversation read before the
server was stopped is not read again after it starts on the same data directory."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningServer, start_server

TURN_TWO = "And which of them saw the most?"


def conversation() -> list[dict[str, str]]:
    """About 1,300 tokens: varied lines, so the tokenizer cannot fold them together."""
    lines = [
        f"Station {i} on the {('north', 'east', 'south', 'west')[i % 4]} shore counted "
        f"{i * 53 % 997} gulls and {i * 29 % 113} terns on day {i % 31 + 1}."
        for i in range(60)
    ]
    return [
        {"role": "system", "content": "You keep a bird survey.\n" + "\n".join(lines)},
        {"role": "user", "content": "Which station counted the most gulls?"},
    ]


def chat(server: RunningServer, messages: list[dict[str, str]]) -> dict:
    model = httpx.get(f"{server.api}/models").json()["data"][0]["id"]
    response = httpx.post(
        f"{server.api}/chat/completions",
        json={"model": model, "messages": messages, "max_tokens": 12, "temperature": 0},
        timeout=600,
    )
    assert response.status_code == 200, response.text
    return response.json()


def serve(tmp_path, data: str, *args: str) -> RunningServer:
    return start_server(
        tmp_path, "--n-ctx", "2048", "--parallel", "2", "--library-dir", str(tmp_path / data), *args
    )


@pytest.fixture
def first_turn(tmp_path) -> tuple[list[dict[str, str]], dict]:
    """The conversation's first turn, answered by a server that is then stopped."""
    server = serve(tmp_path, "data")
    try:
        messages = conversation()
        answer = chat(server, messages)
    finally:
        server.stop()
    assert server.process.returncode == 0
    reply = answer["choices"][0]["message"]["content"]
    return [*messages, {"role": "assistant", "content": reply}], answer


def test_the_next_turn_after_a_restart_reads_only_what_is_new(tmp_path, first_turn):
    history, first = first_turn
    messages = [*history, {"role": "user", "content": TURN_TWO}]
    restarted = serve(tmp_path, "data")
    try:
        warm = chat(restarted, messages)
        health = httpx.get(f"{restarted.url}/health").json()
        metrics = httpx.get(f"{restarted.url}/metrics").text
    finally:
        restarted.stop()
    cold_server = serve(tmp_path, "other", "--cache-disk-mib", "0")
    try:
        cold = chat(cold_server, messages)
    finally:
        cold_server.stop()

    cached = warm["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"] - 1  # the whole first turn, from disk
    assert cold["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert warm["choices"][0]["message"] == cold["choices"][0]["message"]
    assert health["disk_cache_hits"] == 1
    assert health["disk_cache_restored_tokens"] == cached
    model = health["default_model"]
    assert f'hearth_disk_cache_hits_total{{model="{model}"}} 1.0' in metrics
    assert f'hearth_disk_cache_restored_tokens_total{{model="{model}"}} {cached}.0' in metrics
