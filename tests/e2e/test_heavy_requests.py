"""End to end: one huge request never stalls the server for everyone else."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from hearth.engine.base import Prompt
from hearth.engine.llama import LlamaEngine
from hearth.runtime.local import build_registry
from hearth.runtime.settings import ServerSettings
from hearth.server.app import create_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def real_app_client() -> AsyncIterator[httpx.AsyncClient]:
    """The app in process around the real llama.cpp engine and the bundled model."""
    settings = ServerSettings.load({"web": False, "n_ctx": 2048, "threads": 2, "parallel": 1})
    app = create_app(settings, build_registry(settings))
    async with app.router.lifespan_context(app):
        while not app.state.hearth.ready:
            await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            yield client


@pytest.mark.anyio
async def test_health_answers_while_a_huge_message_is_tokenized(monkeypatch):
    """Tokenizing a 7.9 MB message ran on the event loop and stalled /health for 28 s.

    The tokenizer is held, mid-request, until /health has answered: on the event loop that
    cannot happen (the hold times out and the test fails); off it, /health answers first.
    """
    tokenizing, health_answered = threading.Event(), threading.Event()
    held: list[bool] = []
    real_tokenize = LlamaEngine._tokenize

    def held_tokenize(engine: LlamaEngine, prompt: Prompt) -> list[int]:
        if len(prompt.text) > 1_000_000:
            tokenizing.set()
            held.append(health_answered.wait(timeout=30))
        return real_tokenize(engine, prompt)

    monkeypatch.setattr(LlamaEngine, "_tokenize", held_tokenize)
    async with real_app_client() as client:
        model = (await client.get("/v1/models")).json()["data"][0]["id"]
        huge = {
            "model": model,
            "messages": [{"role": "user", "content": "word " * 1_500_000}],  # 7.5 MB
            "max_tokens": 8,
        }
        sent = asyncio.create_task(client.post("/v1/chat/completions", json=huge, timeout=300))
        assert await asyncio.to_thread(tokenizing.wait, 60)
        health = await client.get("/health")
        assert health.status_code == 200
        health_answered.set()
        refused = await sent
        assert held == [True]  # /health answered while the tokenizer was busy
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "context_length_exceeded"
        reply = await client.post(
            "/v1/chat/completions",
            json={**huge, "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert reply.status_code == 200


def test_ten_thousand_messages_are_refused_naming_messages(server, model_id):
    messages = [{"role": "user", "content": "hi"}] * 10_000
    response = httpx.post(
        f"{server.api}/chat/completions",
        json={"model": model_id, "messages": messages, "max_tokens": 8},
        timeout=120,
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages" and "2048" in error["message"]
