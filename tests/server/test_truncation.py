"""A conversation longer than the context: 400 by default, old turns dropped only on request."""

from __future__ import annotations

import pytest

from .scripted_engine import ScriptedEngine, scripted_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def long_chat(**overrides: object) -> dict:
    """Ten exchanges of ten words each, then a short question: about 200 scripted tokens."""
    filler = " ".join(["word"] * 10)
    messages: list[dict] = []
    for i in range(10):
        messages += [
            {"role": "user", "content": f"question {i} {filler}"},
            {"role": "assistant", "content": f"answer {i} {filler}"},
        ]
    messages.append({"role": "user", "content": "and now?"})
    return {"model": "scripted", "messages": messages, "max_tokens": 8, **overrides}


async def test_silent_truncation_is_gone_a_long_chat_is_400_context_length_exceeded():
    """A long chat used to answer 200 with old turns dropped, said only in a header."""
    engine = ScriptedEngine(n_ctx=64)
    async for client in scripted_client(engine):
        for stream in (False, True):
            response = await client.post("/v1/chat/completions", json=long_chat(stream=stream))
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert error["code"] == "context_length_exceeded"
            assert error["param"] == "messages"
            assert error["type"] == "invalid_request_error"
            assert "64" in error["message"]
        assert engine.requests == []  # nothing reached the engine


async def test_truncation_auto_drops_oldest_turns_and_says_how_many():
    engine = ScriptedEngine(n_ctx=64)
    async for client in scripted_client(engine):
        response = await client.post("/v1/chat/completions", json=long_chat(truncation="auto"))
        assert response.status_code == 200, response.text
        dropped = int(response.headers["x-hearth-dropped-messages"])
        assert 0 < dropped < 21 and dropped % 2 == 0
        assert "and now?" in engine.requests[0].prompt.text
        assert "question 0 " not in engine.requests[0].prompt.text


async def test_server_flag_truncation_auto_is_the_default_a_request_can_refuse():
    engine = ScriptedEngine(n_ctx=64)
    async for client in scripted_client(engine, truncation="auto"):
        allowed = await client.post("/v1/chat/completions", json=long_chat())
        assert allowed.status_code == 200
        assert int(allowed.headers["x-hearth-dropped-messages"]) > 0
        refused = await client.post("/v1/chat/completions", json=long_chat(truncation="disabled"))
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == "context_length_exceeded"


async def test_truncation_takes_only_auto_or_disabled():
    async for client in scripted_client(ScriptedEngine()):
        response = await client.post("/v1/chat/completions", json=long_chat(truncation="yes"))
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "truncation"


async def test_responses_api_refuses_an_overlong_input_unless_truncation_is_auto():
    engine = ScriptedEngine(n_ctx=64)
    async for client in scripted_client(engine):
        items = [{"type": "message", **m} for m in long_chat()["messages"]]
        body = {"model": "scripted", "input": items, "max_output_tokens": 8}
        refused = await client.post("/v1/responses", json=body)
        assert refused.status_code == 400, refused.text
        assert refused.json()["error"]["code"] == "context_length_exceeded"
        allowed = await client.post("/v1/responses", json={**body, "truncation": "auto"})
        assert allowed.status_code == 200, allowed.text


async def test_overlong_completion_prompt_names_prompt():
    async for client in scripted_client(ScriptedEngine(n_ctx=16)):
        response = await client.post(
            "/v1/completions",
            json={"model": "scripted", "prompt": "word " * 40, "max_tokens": 4},
        )
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "prompt"
