"""The HTTP layer in-process (httpx ASGITransport) around a scripted engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from hearth.engine.errors import GenerationFailed
from hearth.runtime.settings import ServerSettings
from hearth.server.app import create_app

from .scripted_engine import ScriptedEngine, scripted_client, scripted_registry

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def app_for(engine: ScriptedEngine, **settings: object) -> FastAPI:
    loaded = ServerSettings.load({"web": False, **settings})
    return create_app(loaded, scripted_registry({"scripted": engine}, loaded))


def client_for(engine: ScriptedEngine, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    return scripted_client(engine, **settings)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in client_for(ScriptedEngine()):
        yield c


def chat(**overrides: object) -> dict:
    return {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}], **overrides}


def sse_data(body: str) -> list[str]:
    return [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


async def test_chat_completion_returns_the_engine_reply(client):
    response = await client.post("/v1/chat/completions", json=chat())
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello, world!"}
    assert body["choices"][0]["finish_reason"] == "stop"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert response.headers["x-hearth-dropped-messages"] == "0"


async def test_stream_has_role_first_finish_once_usage_then_done(client):
    response = await client.post(
        "/v1/chat/completions",
        json=chat(stream=True, stream_options={"include_usage": True}),
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_data(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert [f for f in finishes if f] == ["stop"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "Hello, world!"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 4
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1


async def test_stream_deltas_leave_out_null_role_and_content(client):
    """Deltas after the first carried "role": null and the last "content": null; OpenAI
    leaves such keys out, and clients that test `"role" in delta` misread the nulls."""
    response = await client.post("/v1/chat/completions", json=chat(stream=True))
    chunks = [json.loads(e) for e in sse_data(response.text)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert all(set(d) == {"content"} for d in deltas[1:-1])
    assert deltas[-1] == {}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_error_after_the_stream_began_is_an_sse_error_event():
    async for client in client_for(ScriptedEngine(fail_after=GenerationFailed("decode failed"))):
        response = await client.post("/v1/chat/completions", json=chat(stream=True))
        assert response.status_code == 200
        events = sse_data(response.text)
        assert json.loads(events[-1])["error"]["code"] == "engine_failure"
        assert "[DONE]" not in events


async def test_malformed_json_is_400(client):
    response = await client.post(
        "/v1/chat/completions",
        content=b'{"model": "scripted", "messages": [',
        headers={"content-type": "application/json"},
    )
    assert_openai_error(response, 400)


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"n": 0}, "n"),
        ({"n": 9}, "n"),
        ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"logit_bias": {"abc": 1}}, "logit_bias"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema.json_schema"),
        ({"top_k": -1}, "top_k"),
    ],
)
async def test_bad_values_are_400_naming_the_param(client, overrides, param):
    response = await client.post("/v1/chat/completions", json=chat(**overrides))
    assert_openai_error(response, 400, param)


async def test_unknown_model_is_404_never_another_model(client):
    response = await client.post("/v1/chat/completions", json=chat(model="gpt-4"))
    error = assert_openai_error(response, 404, "model")
    assert error["code"] == "model_not_found"
    assert "scripted" in error["message"]


async def test_prompt_longer_than_context_is_400_with_both_numbers():
    async for client in client_for(ScriptedEngine(n_ctx=16)):
        long = " ".join(["word"] * 40)
        response = await client.post(
            "/v1/completions", json={"model": "scripted", "prompt": long, "max_tokens": 4}
        )
        error = assert_openai_error(response, 400, "prompt")
        assert error["code"] == "context_length_exceeded"
        assert "16" in error["message"] and "40" in error["message"]


async def test_api_key_is_required_when_set():
    async for client in client_for(ScriptedEngine(), api_key="sesame"):
        missing = await client.post("/v1/chat/completions", json=chat())
        assert_openai_error(missing, 401)
        wrong = await client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer nope"}
        )
        assert assert_openai_error(wrong, 401)["code"] == "invalid_api_key"
        right = await client.post(
            "/v1/chat/completions", json=chat(), headers={"Authorization": "Bearer sesame"}
        )
        assert right.status_code == 200
        assert (await client.get("/health")).status_code == 200  # health stays open


async def test_body_too_large_is_413():
    async for client in client_for(ScriptedEngine(), max_body_bytes=2048):
        big = chat(messages=[{"role": "user", "content": "x" * 5000}])
        assert_openai_error(await client.post("/v1/chat/completions", json=big), 413)
        assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_health_is_503_until_the_model_is_loaded():
    engine = ScriptedEngine()
    app = app_for(engine)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        assert (await client.get("/health")).status_code == 503
        assert_openai_error(await client.post("/v1/chat/completions", json=chat()), 503)


async def test_models_lists_the_model_and_its_chat_formats(client):
    ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
    assert ids[0] == "scripted"
    assert "scripted:chat-with-bob" in ids and "scripted:template" in ids
    assert (await client.get("/v1/models/scripted:chat-with-bob")).status_code == 200
    assert_openai_error(await client.get("/v1/models/nope"), 404)


async def test_unknown_route_is_an_openai_shaped_404(client):
    assert_openai_error(await client.get("/v1/nothing-here"), 404)


@pytest.mark.parametrize("web", [False, True])
async def test_unknown_post_route_is_404_even_beside_the_chat_page(web):
    """The chat page's static mount at "/" answered 405 to a POST on an unknown API route."""
    async for client in client_for(ScriptedEngine(), web=web):
        error = assert_openai_error(await client.post("/v1/audio/speech", json={}), 404)
        assert error["code"] == "not_found"


@pytest.mark.parametrize("web", [False, True])
async def test_get_on_a_post_route_is_405_with_allow(web):
    """GET /v1/chat/completions answered 404 when the static mount took it."""
    async for client in client_for(ScriptedEngine(), web=web):
        response = await client.get("/v1/chat/completions")
        assert_openai_error(response, 405)
        assert response.headers["allow"] == "POST"


async def test_request_fields_reach_the_engine():
    engine = ScriptedEngine()
    async for client in client_for(engine, temperature=0.5):
        await client.post(
            "/v1/chat/completions",
            json=chat(
                stop="END",
                seed=7,
                top_k=5,
                max_completion_tokens=9,
                max_tokens=3,
                logit_bias={"42": -100},
            ),
        )
    request = engine.requests[-1]
    assert request.stop[-1] == "END"
    assert request.max_tokens == 9  # max_completion_tokens supersedes max_tokens
    assert request.sampling.seed == 7 and request.sampling.top_k == 5
    assert request.sampling.temperature == 0.5  # left out: the server default
    assert request.sampling.logit_bias == ((42, -100.0),)
    assert request.prompt.parse_special  # a model template's special tokens are parsed


async def test_text_content_parts_are_joined(client):
    message = {
        "role": "user",
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
    }
    assert (
        await client.post("/v1/chat/completions", json=chat(messages=[message]))
    ).status_code == 200


async def test_completions_stream_and_echo(client):
    response = await client.post(
        "/v1/completions",
        json={"model": "scripted", "prompt": "Say", "echo": True, "stream": True},
    )
    events = sse_data(response.text)
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == "SayHello, world!"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_chunked_body_too_large_is_413_without_a_declared_length():
    async for client in client_for(ScriptedEngine(), max_body_bytes=2048):

        async def body() -> AsyncIterator[bytes]:
            yield b'{"model": "scripted", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}]}'

        response = await client.post(
            "/v1/chat/completions", content=body(), headers={"content-type": "application/json"}
        )
        assert_openai_error(response, 413)


@pytest.mark.parametrize(
    ("overrides", "param", "named"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "x", "schema": {"type": "strng"}},
                }
            },
            "response_format.json_schema.schema",
            "strng",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "x",
                        "schema": {"$ref": "#/$defs/Missing", "$defs": {}},
                    },
                }
            },
            "response_format.json_schema.schema",
            "Missing",
        ),
        ({"grammar": "root ::= undefined-rule"}, "grammar", "GBNF"),
    ],
)
async def test_uncompilable_schema_or_grammar_is_400_naming_the_problem(
    client, overrides, param, named
):
    response = await client.post("/v1/chat/completions", json=chat(**overrides))
    error = assert_openai_error(response, 400, param)
    assert named in error["message"]
    assert (await client.post("/v1/chat/completions", json=chat())).status_code == 200


async def test_grammar_and_json_response_format_together_are_400(client):
    response = await client.post(
        "/v1/chat/completions",
        json=chat(grammar='root ::= "a"', response_format={"type": "json_object"}),
    )
    assert_openai_error(response, 400)


async def test_metrics_count_requests_by_route_and_status(client):
    await client.post("/v1/chat/completions", json=chat())
    await client.post("/v1/chat/completions", json=chat(model="nope"))
    await client.post("/v1/no-such-route/12345", json={})
    response = await client.get("/metrics")
    assert response.status_code == 200
    text = response.text
    assert (
        'hearth_http_requests_total{method="POST",route="/v1/chat/completions",status="200"} 1.0'
        in text
    )
    assert 'route="/v1/chat/completions",status="404"} 1.0' in text
    assert "/v1/no-such-route" not in text  # unknown paths share one label
    assert 'route="unmatched"' in text
    assert 'hearth_slots{model="scripted"} 1.0' in text
    assert 'hearth_waiting{model="scripted"} 0.0' in text
    assert 'hearth_model_loaded{model="scripted"} 1.0' in text
    assert 'hearth_draft_tokens_total{model="scripted"} 5.0' in text
    assert 'hearth_accepted_draft_tokens_total{model="scripted"} 3.0' in text


async def test_more_messages_than_max_messages_is_400_naming_messages():
    async for client in client_for(ScriptedEngine(), max_messages=3):
        messages = [{"role": "user", "content": "hi"}] * 4
        response = await client.post("/v1/chat/completions", json=chat(messages=messages))
        error = assert_openai_error(response, 400, "messages")
        assert "at most 3 messages" in error["message"]


# ------------------------------------------------- deprecated functions / function_call

WEATHER_FUNCTION = {
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
CALL_TEXT = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.mark.parametrize("function_call", [{"name": "get_weather"}, "auto", None])
async def test_legacy_functions_are_answered_with_a_function_call(function_call):
    """`functions` and `function_call` were silently ignored: a 200 with prose, no call."""
    engine = ScriptedEngine(reply=[CALL_TEXT[:15], CALL_TEXT[15:]], n_ctx=4096)
    legacy = {"functions": [WEATHER_FUNCTION]}
    if function_call is not None:
        legacy["function_call"] = function_call
    async for client in client_for(engine):
        whole = await client.post("/v1/chat/completions", json=chat(**legacy))
        streamed = await client.post("/v1/chat/completions", json=chat(**legacy, stream=True))
    assert whole.status_code == 200, whole.text
    choice = whole.json()["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    # The functions reached the model as tools; a named function_call forces the call
    # from the first token, otherwise the call grammar waits for the model's opener.
    sent = engine.requests[0]
    assert "get_weather" in sent.prompt.text and sent.grammar is not None
    assert (sent.grammar_trigger is None) == isinstance(function_call, dict)
    chunks = [json.loads(e) for e in sse_data(streamed.text)[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert all("tool_calls" not in delta for delta in deltas)
    calls = [delta["function_call"] for delta in deltas if "function_call" in delta]
    assert calls[0]["name"] == "get_weather"
    assert "".join(call["arguments"] for call in calls) == '{"city": "Paris"}'
    assert [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]
    ] == ["function_call"]


async def test_legacy_function_turns_in_the_history_are_accepted():
    """A `function` message (a legacy call's result) was refused as an unknown role."""
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "function_call": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"role": "function", "name": "get_weather", "content": "18 C and sunny"},
    ]
    engine = ScriptedEngine(n_ctx=4096)
    async for client in client_for(engine):
        response = await client.post(
            "/v1/chat/completions", json=chat(messages=history, functions=[WEATHER_FUNCTION])
        )
    assert response.status_code == 200, response.text
    prompt = engine.requests[0].prompt.text
    assert '"city": "Paris"' in prompt and "18 C and sunny" in prompt


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        (
            {
                "functions": [WEATHER_FUNCTION],
                "tools": [{"type": "function", "function": WEATHER_FUNCTION}],
            },
            "functions",
        ),
        (
            {"functions": [WEATHER_FUNCTION], "function_call": {"name": "launch_rocket"}},
            "function_call",
        ),
        ({"function_call": "auto"}, "function_call"),
    ],
)
async def test_bad_legacy_function_fields_are_400_naming_them(client, fields, param):
    """Functions with tools (and other bad legacy fields) were ignored instead of refused."""
    assert_openai_error(await client.post("/v1/chat/completions", json=chat(**fields)), 400, param)
