"""Several models served at once, through the official openai client and a real server:
the bundled SmolLM2 (llama) and Gemma 3 270M (gemma3), loaded on demand."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import GEMMA, RunningServer, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SMOL = "smollm2"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="session")
def models_dir(gemma_models_dir: Path) -> Path:
    return gemma_models_dir


def serve(tmp: Path, models_dir: Path, *args: str) -> RunningServer:
    return start_server(
        tmp,
        "--model",
        SMOL,
        "--models-dir",
        str(models_dir),
        "--n-ctx",
        "1024",
        "--parallel",
        "2",
        *args,
    )


def health(server: RunningServer) -> dict:
    return httpx.get(f"{server.url}/health", timeout=10).json()


def states(server: RunningServer) -> dict[str, str]:
    return {name: model["state"] for name, model in health(server)["models"].items()}


def ask(client: openai.OpenAI, model: str) -> str:
    reply = client.chat.completions.create(
        model=model, messages=QUESTION, temperature=0, max_tokens=16
    )
    assert reply.model == model
    return reply.choices[0].message.content or ""


@pytest.fixture(scope="module")
def one_at_a_time(tmp_path_factory, models_dir):
    server = serve(
        tmp_path_factory.mktemp("one"), models_dir, "--max-loaded-models", "1", "--keep-alive", "0"
    )
    yield server
    server.stop()


def test_models_lists_every_model_with_its_state(one_at_a_time):
    client = openai.OpenAI(base_url=one_at_a_time.api, api_key="none")
    cards = {card.id: card for card in client.models.list().data}
    assert {SMOL, f"{SMOL}:template", GEMMA, f"{GEMMA}:chat-with-bob"} <= set(cards)
    assert f"{GEMMA}:template" not in cards  # a base model: no chat template in its GGUF
    assert next(iter(cards)) == SMOL  # --model names the default model
    assert states(one_at_a_time)[GEMMA] in {"unloaded", "loaded"}


def test_a_then_b_then_a_with_one_model_resident(one_at_a_time):
    client = openai.OpenAI(base_url=one_at_a_time.api, api_key="none", timeout=300)
    assert ask(client, SMOL)
    assert states(one_at_a_time) == {SMOL: "loaded", GEMMA: "unloaded"}
    gemma = ask(client, f"{GEMMA}:chat-with-bob")
    assert "Paris" in gemma  # the 270M answers it this way; SmolLM2 does not say it here
    assert states(one_at_a_time) == {SMOL: "unloaded", GEMMA: "loaded"}
    assert ask(client, SMOL)
    assert states(one_at_a_time) == {SMOL: "loaded", GEMMA: "unloaded"}


def test_requests_during_a_load_wait_for_that_one_load(one_at_a_time):
    client = openai.OpenAI(base_url=one_at_a_time.api, api_key="none", timeout=300)
    ask(client, SMOL)  # so that Gemma is not resident
    before = len(re.findall(rf"loaded {GEMMA} in", one_at_a_time.log()))
    replies: list[str] = []
    threads = [
        threading.Thread(target=lambda: replies.append(ask(client, GEMMA))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    saw_loading = False
    while any(thread.is_alive() for thread in threads):
        saw_loading |= states(one_at_a_time)[GEMMA] == "loading"
        time.sleep(0.05)
    assert len(replies) == 3 and all(replies)
    assert saw_loading
    assert len(re.findall(rf"loaded {GEMMA} in", one_at_a_time.log())) == before + 1


def test_a_request_for_b_waits_for_a_stream_of_a_then_swaps_instead_of_503(one_at_a_time):
    """With one model resident, a request for B while A streamed got 503 'all 1 loaded models
    are busy' instead of waiting for A to finish."""
    client = openai.OpenAI(
        base_url=one_at_a_time.api, api_key="none", timeout=300, max_retries=0
    )  # a retried 503 would hide the bug
    ask(client, SMOL)  # so that Gemma is not resident
    stream = client.chat.completions.create(
        model=SMOL,
        messages=QUESTION,
        temperature=0,
        max_tokens=300,
        stream=True,
        logit_bias={"2": -100},  # no end-of-sequence: A streams all 300 tokens
    )
    chunks = iter(stream)
    next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content)
    replies: list[str] = []
    errors: list[Exception] = []

    def ask_gemma() -> None:
        try:
            replies.append(ask(client, f"{GEMMA}:chat-with-bob"))
        except openai.APIError as error:
            errors.append(error)

    thread = threading.Thread(target=ask_gemma)
    thread.start()
    deadline = time.monotonic() + 120
    while health(one_at_a_time).get("model_queue") != 1:  # B waits while A streams
        assert not errors, errors
        assert thread.is_alive() and time.monotonic() < deadline, health(one_at_a_time)
        time.sleep(0.05)
    assert states(one_at_a_time) == {SMOL: "loaded", GEMMA: "unloaded"}
    finishes = [
        chunk.choices[0].finish_reason
        for chunk in chunks
        if chunk.choices and chunk.choices[0].finish_reason
    ]
    assert finishes == ["length"]  # A ran to its end: the swap did not cut it short
    thread.join(timeout=300)
    assert not errors, errors
    assert len(replies) == 1 and "Paris" in replies[0]
    assert states(one_at_a_time) == {SMOL: "unloaded", GEMMA: "loaded"}
    assert health(one_at_a_time)["model_queue"] == 0


def test_a_client_that_hangs_up_while_waiting_for_its_model_leaves_the_queue(one_at_a_time):
    """A request for B whose client hung up while A streamed stayed queued and loaded B."""
    client = openai.OpenAI(base_url=one_at_a_time.api, api_key="none", timeout=300)
    ask(client, SMOL)  # so that Gemma is not resident
    stream = client.chat.completions.create(
        model=SMOL,
        messages=QUESTION,
        temperature=0,
        max_tokens=600,
        stream=True,
        logit_bias={"2": -100},
    )
    chunks = iter(stream)
    next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content)
    body = json.dumps({"model": GEMMA, "messages": QUESTION, "max_tokens": 4}).encode()
    with socket.create_connection(("127.0.0.1", one_at_a_time.port), timeout=30) as gone:
        gone.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        until_queue_is(one_at_a_time, 1)
    until_queue_is(one_at_a_time, 0)  # the client hung up: its request left the queue...
    assert health(one_at_a_time)["models"][SMOL]["slots_busy"] == 1  # ...while A streams
    assert [
        chunk.choices[0].finish_reason
        for chunk in chunks
        if chunk.choices and chunk.choices[0].finish_reason
    ] == ["length"]
    assert states(one_at_a_time) == {SMOL: "loaded", GEMMA: "unloaded"}


def until_queue_is(server: RunningServer, count: int) -> None:
    deadline = time.monotonic() + 120
    while health(server).get("model_queue") != count:
        assert time.monotonic() < deadline, health(server)
        time.sleep(0.05)


def test_unknown_model_is_still_404(one_at_a_time):
    client = openai.OpenAI(base_url=one_at_a_time.api, api_key="none")
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=QUESTION)
    assert missing.value.body["code"] == "model_not_found"


def test_both_models_serve_concurrently_and_idle_ones_unload(tmp_path, models_dir):
    server = serve(tmp_path, models_dir, "--max-loaded-models", "2", "--keep-alive", "4s")
    try:
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        replies: dict[str, list[str]] = {SMOL: [], GEMMA: []}
        threads = [
            threading.Thread(target=lambda m=m: replies[m].append(ask(client, m)))
            for m in (SMOL, GEMMA, SMOL, GEMMA)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [len(r) for r in replies.values()] == [2, 2]
        assert all(all(r) for r in replies.values())
        # Both were resident together: neither was unloaded to make room for the other.
        assert "to make room" not in server.log()
        assert len(re.findall(rf"loaded {GEMMA} in", server.log())) == 1
        deadline = time.monotonic() + 60
        while states(server) != {SMOL: "unloaded", GEMMA: "unloaded"}:
            assert time.monotonic() < deadline, health(server)
            time.sleep(0.5)
        assert ask(client, GEMMA)  # unloaded is not gone: it loads again when asked
    finally:
        server.stop()


def test_a_model_that_fails_to_load_answers_for_itself_only(tmp_path, models_dir):
    broken_dir = tmp_path / "models"
    broken_dir.mkdir()
    (broken_dir / "broken.gguf").write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 64)
    server = serve(tmp_path, broken_dir)
    try:
        client = openai.OpenAI(base_url=server.api, api_key="none", max_retries=0)
        with pytest.raises(openai.InternalServerError) as failed:
            client.chat.completions.create(model="broken", messages=QUESTION)
        assert failed.value.body["code"] == "model_load_failed"
        assert "broken" in failed.value.body["message"]
        assert states(server)["broken"] == "failed"
        assert ask(client, SMOL)
        assert health(server)["status"] == "ok"
    finally:
        server.stop()
