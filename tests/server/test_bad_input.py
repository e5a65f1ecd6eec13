"""No input a client can send gets a 5xx: named bad inputs, then generated bodies (hypothesis).

The app runs in-process around the scripted engine, so the property test exercises parsing,
validation and the error mapping, the layers where a 500 from bad input comes from.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core import NOT_SET

from hearth.runtime.settings import ServerSettings
from hearth.server.app import create_app

from .scripted_engine import ScriptedEngine, scripted_registry

LONE_SURROGATE = "\ud800"


class InProcessApp:
    """The app with its lifespan entered, driven from sync code on one private event loop.

    Hypothesis calls the test body synchronously for each example; entering the lifespan
    once and reusing the loop keeps an example in the milliseconds.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        settings = ServerSettings.load({"web": False})
        self.app = create_app(settings, scripted_registry({"scripted": ScriptedEngine()}, settings))
        self._lifespan = self.app.router.lifespan_context(self.app)
        self.loop.run_until_complete(self._start())
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://localhost")

    async def _start(self) -> None:
        await self._lifespan.__aenter__()
        for _ in range(100):
            if self.app.state.hearth.ready:
                return
            await asyncio.sleep(0.01)

    def send(self, request: dict) -> httpx.Response:
        """Send schemathesis's transport arguments (method, url, headers, json or data...)."""
        body = request.get("json", NOT_SET)
        content = request.get("data") if body is NOT_SET else json.dumps(body).encode()
        sent = self.client.request(
            request["method"],
            request["url"],
            content=content,
            params=request.get("params"),
            headers={k: str(v) for k, v in (request.get("headers") or {}).items()},
        )
        return self.loop.run_until_complete(sent)

    def post(self, path: str, body: object) -> httpx.Response:
        # ensure_ascii writes a lone surrogate as the JSON escape "\ud800", as a client may.
        content = json.dumps(body, ensure_ascii=True).encode()
        headers = {"content-type": "application/json"}
        return self.loop.run_until_complete(
            self.client.post(path, content=content, headers=headers)
        )

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def app() -> Iterator[InProcessApp]:
    running = InProcessApp()
    yield running
    running.close()


def assert_openai_error(response: httpx.Response, status: int, param: str | None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param


def assert_error_shape(path: str, response: httpx.Response) -> None:
    """The error body is in the shape of the API the path belongs to."""
    body = response.json()
    if path.startswith("/v1/messages"):
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
        error = body["error"]
    else:
        error = body["error"]
        assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]


def chat(**overrides: object) -> dict:
    return {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}], **overrides}


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        (
            "/v1/chat/completions",
            chat(messages=[{"role": "user", "content": LONE_SURROGATE}]),
            "messages[0].content",
        ),
        (
            "/v1/chat/completions",
            chat(
                messages=[{"role": "user", "content": [{"type": "text", "text": LONE_SURROGATE}]}]
            ),
            "messages[0].content",
        ),
        ("/v1/chat/completions", chat(model=LONE_SURROGATE), "model"),
        ("/v1/chat/completions", chat(stop=["ok", "a" + LONE_SURROGATE]), "stop"),
        ("/v1/completions", {"model": "scripted", "prompt": LONE_SURROGATE}, "prompt"),
        ("/v1/completions", {"model": LONE_SURROGATE, "prompt": "Hi"}, "model"),
    ],
)
def test_lone_surrogate_is_400_naming_the_param_not_500(app, path, body, param):
    """A lone surrogate is valid JSON but not UTF-8; it used to fail as a 500 downstream."""
    assert_openai_error(app.post(path, body), 400, param)


@pytest.mark.parametrize("key", ["²", "٣", "1" * 5000, "-1", "1e3", " 7", "12345678901"])
def test_logit_bias_key_that_is_not_a_plain_token_id_is_400_not_500(app, key):
    """str.isdigit() let "²" and 5,000-digit keys through to int(), which raised: a 500."""
    assert_openai_error(
        app.post("/v1/chat/completions", chat(logit_bias={key: 1})), 400, "logit_bias"
    )


# ------------------------------------------------------------------ generated bodies

# Any character, lone surrogates included (hypothesis leaves them out by default).
_text = st.text(st.characters(exclude_categories=()), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3),
    max_leaves=8,
)
_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "developer", "user", "assistant", "tool"]) | _json},
    optional={"content": _json | _text, "name": _json},
)
# Anthropic's content blocks, each type with generated fields.
_block = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["text", "image", "document", "tool_use", "tool_result", "thinking", "other"]
        )
        | _json
    },
    optional={
        "text": _text | _json,
        "id": _text,
        "name": _text,
        "input": _json,
        "tool_use_id": _text,
        "content": _text | _json,
        "is_error": _json,
        "source": _json,
    },
)
_anthropic_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant"]) | _json},
    optional={"content": _text | st.lists(_block, max_size=3) | _json},
)
_anthropic_tool = st.fixed_dictionaries(
    {"name": _text | st.just("get_weather")},
    optional={"input_schema": _json | st.just({"type": "object"}), "type": _json},
)
_tool_choice = st.fixed_dictionaries(
    {"type": st.sampled_from(["auto", "any", "tool", "none"]) | _json},
    optional={"name": _text | st.just("get_weather"), "disable_parallel_tool_use": _json},
)
_FIELDS = [
    "model",
    "prompt",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "logit_bias",
    "n",
    "logprobs",
    "echo",
    "suffix",
    "user",
    "response_format",
    "tools",
    "input",
    "instructions",
    "text",
    "tool_choice",
    "max_output_tokens",
    "previous_response_id",
    "store",
    "encoding_format",
    "dimensions",
    "content",
    "tokens",
    "with_pieces",
    "add_special",
    # Anthropic's Messages API
    "system",
    "stop_sequences",
    "thinking",
    "metadata",
    "grammar",
]
# Every route that takes a JSON body.
_ROUTES = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/responses",
    "/v1/embeddings",
    "/tokenize",
    "/detokenize",
    "/v1/messages",
    "/v1/messages/count_tokens",
]
_overrides = st.fixed_dictionaries(
    {},
    optional={
        **{name: _json for name in _FIELDS},
        "messages": st.lists(_message, max_size=3)
        | st.lists(_anthropic_message, max_size=3)
        | _json,
        "logit_bias": st.dictionaries(_text | st.integers().map(str), _json, max_size=2),
        "tools": st.lists(_anthropic_tool, max_size=2) | _json,
        "tool_choice": _tool_choice | _json,
    },
)
_VALID = {
    "model": "scripted",
    "messages": [{"role": "user", "content": "Hi"}],
    "prompt": "Hi",
    "input": "Hi",
    "content": "Hi",
    "tokens": [1],
    "max_tokens": 8,
}
_bodies = st.tuples(st.sampled_from(_ROUTES), st.just(_VALID), _overrides) | st.tuples(
    st.sampled_from(_ROUTES), _json, st.just({})
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_bodies)
def test_generated_bodies_never_get_a_5xx_and_errors_have_their_apis_shape(app, case):
    path, base, overrides = case
    body = {**base, **overrides} if isinstance(base, dict) else base
    response = app.post(path, body)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error_shape(path, response)


def test_responses_input_messages_without_a_type_are_accepted(app):
    """`{"role", "content"}` items (no `"type": "message"`, as OpenAI allows and the agents
    SDKs send) were refused with a 400 naming 'input.str'."""
    response = app.post(
        "/v1/responses",
        {
            "model": "scripted",
            "input": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]},
            ],
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["output"][0]["content"][0]["text"] == "Hello, world!"


@pytest.mark.parametrize(
    ("item", "param"),
    [
        ({"role": "wizard", "content": "Hi"}, "input[0].role"),
        ({"type": "message", "role": "user"}, "input[0].content"),
        ({"type": "function_call_output", "output": "18 C"}, "input[0].call_id"),
        ({"type": "telepathy", "content": "Hi"}, "input[0].type"),
    ],
)
def test_a_bad_responses_input_item_is_400_naming_its_field(app, item, param):
    """A bad input item's error named the union's first branch ('input.str'), not the item."""
    body = {"model": "scripted", "input": [item]}
    assert_openai_error(app.post("/v1/responses", body), 400, param)


def test_responses_with_an_empty_input_list_is_400_naming_input(app):
    # Found by the property test above: it reached the chat request as no messages, a 500.
    response = app.post("/v1/responses", {"model": "scripted", "input": []})
    assert response.status_code == 400 and response.json()["error"]["param"] == "input"


# ------------------------------------------------------------------ schema-driven (schemathesis)

# Cases generated from the app's own /openapi.json, so a field added to a route is fuzzed
# with no change here. Schemathesis builds structured values the generic bodies above
# rarely reach (a tool_choice naming a function, tools, typed input items).
_SCHEMA = schemathesis.openapi.from_dict(
    create_app(
        ServerSettings.load({"web": False}), scripted_registry({"scripted": ScriptedEngine()})
    ).openapi()
)


@_SCHEMA.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_schema_generated_requests_never_get_a_5xx(app, case):
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str):
        case.body["model"] = "scripted"  # past the model lookup, into the route itself
    response = app.send(case.as_transport_kwargs(base_url="http://localhost"))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    if response.status_code >= 400:
        assert_error_shape(case.formatted_path, response)


def test_responses_tool_choice_naming_no_tool_is_400_not_500(app):
    # Found by bench/api_fuzz.py: the chat request refused it inside the route, a 500.
    response = app.post(
        "/v1/responses",
        {
            "model": "scripted",
            "input": "Hi",
            "tools": [],
            "tool_choice": {"type": "function", "name": "missing"},
        },
    )
    assert response.status_code == 400, response.text
    assert "missing" in response.json()["error"]["message"]
