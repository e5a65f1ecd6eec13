"""The Messages API's HTTP layer in-process, and its request in runtime terms (no model).

What the model does with it is tested end to end in tests/e2e/test_anthropic.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from hearth.engine.base import Finished, GenerationRequest
from hearth.engine.errors import GenerationFailed, QueueFull
from hearth.runtime.reasoning import Piece
from hearth.runtime.requests import Thinking, ToolCall, Turn
from hearth.runtime.tools.reply import Reply
from hearth.server.anthropic.protocol import MessagesRequest
from hearth.server.anthropic.serving import stop_of
from hearth.server.anthropic.streaming import Blocks

from .scripted_engine import ScriptedEngine, ScriptedGeneration, scripted_client

pytestmark = pytest.mark.anyio

WEATHER = {"name": "get_weather", "input_schema": {"type": "object"}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async for c in scripted_client(ScriptedEngine(n_ctx=1024)):
        yield c


def ask(**overrides: object) -> dict:
    return {
        "model": "scripted",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Hi"}],
        **overrides,
    }


def request(**overrides: object) -> MessagesRequest:
    return MessagesRequest.model_validate(ask(**overrides))


def assert_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == kind
    return body["error"]["message"]


def sse_events(body: str) -> list[tuple[str, dict]]:
    blocks = [block for block in body.split("\n\n") if block.strip()]
    events = []
    for block in blocks:
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]  # Anthropic names each event after its type
        events.append((lines["event"], data))
    return events


# ------------------------------------------------------------------- request conversion


def test_blocks_become_turns_calls_and_tool_results():
    body = request(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Use the tool.", "signature": "x"},
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18 C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "down"}],
                        "is_error": True,
                    },
                    {"type": "text", "text": "Thanks", "cache_control": {"type": "ephemeral"}},
                ],
            },
        ],
        tools=[WEATHER],
    )
    assert body.to_runtime().turns == [
        Turn("system", "Be brief.\n\nBe kind."),
        Turn("user", "Weather?"),
        Turn(
            "assistant",
            "Let me look.",
            (ToolCall("toolu_1", "get_weather", "{}"),),
            reasoning="Use the tool.",
        ),
        Turn("tool", "18 C", tool_call_id="toolu_1"),
        Turn("tool", "Error: down", tool_call_id="toolu_1"),
        Turn("user", "Thanks"),
    ]


@pytest.mark.parametrize(
    ("choice", "mode", "named", "parallel"),
    [
        (None, "auto", None, True),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", None, False),
        ({"type": "any"}, "required", None, True),
        ({"type": "tool", "name": "get_weather"}, "auto", "get_weather", False),
        (
            {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": False},
            "auto",
            "get_weather",
            True,
        ),
        ({"type": "none"}, "none", None, True),
    ],
)
def test_tool_choice_maps_to_the_runtimes_tool_use(choice, mode, named, parallel):
    use = request(tools=[WEATHER], tool_choice=choice).to_runtime().tools
    assert (use.choice, use.named, use.parallel) == (mode, named, parallel)
    assert use.tools[0].as_sent["function"]["name"] == "get_weather"


@pytest.mark.parametrize(
    ("thinking", "expected"),
    [
        (None, Thinking()),
        ({"type": "enabled", "budget_tokens": 2048}, Thinking(enabled=True, budget_tokens=2048)),
        ({"type": "disabled"}, Thinking(enabled=False)),
    ],
)
def test_thinking_maps_to_the_runtimes_thinking(thinking, expected):
    assert request(thinking=thinking).to_runtime().thinking == expected


def test_sampling_stop_sequences_and_grammar_are_read_from_the_body():
    runtime = request(
        temperature=0.2, top_p=0.9, top_k=5, stop_sequences=["END", ""], grammar='root ::= "a"'
    ).to_runtime()
    sampling = runtime.sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k) == (0.2, 0.9, 5)
    assert runtime.stop == ("END",) and runtime.max_tokens == 16
    assert runtime.output.grammar == 'root ::= "a"' and runtime.output.param == "grammar"


@pytest.mark.parametrize(
    ("end", "stop", "expected"),
    [
        ("tool_calls", None, ("tool_use", None)),
        ("length", None, ("max_tokens", None)),
        ("stop", "END", ("stop_sequence", "END")),
        ("stop", "<|end|>", ("end_turn", None)),  # the chat format's own stop, not asked for
        ("stop", None, ("end_turn", None)),
    ],
)
def test_stop_reason_names_only_a_stop_sequence_the_client_sent(end, stop, expected):
    finished = Finished("stop", 3, 2, stop_sequence=stop)
    assert stop_of(Reply("", (), end), finished, ("END",)) == expected


def test_blocks_open_one_per_run_of_a_kind_and_number_them():
    blocks = Blocks()
    out = [
        *blocks.piece(Piece("reasoning", "Hmm.")),
        *blocks.piece(Piece("reasoning", " Yes.")),
        *blocks.piece(Piece("content", "")),
        *blocks.piece(Piece("content", "Hi")),
        *blocks.close(),
        *blocks.tool_use("toolu_1", "get_weather", {"city": "Paris"}),
    ]
    events = sse_events(b"".join(out).decode())
    assert [(name, data.get("index")) for name, data in events] == [
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
    ]
    assert events[0][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert events[1][1]["delta"] == {"type": "thinking_delta", "thinking": "Hmm."}
    assert events[5][1]["delta"] == {"type": "text_delta", "text": "Hi"}
    assert events[8][1]["delta"] == {
        "type": "input_json_delta",
        "partial_json": '{"city": "Paris"}',
    }


# ------------------------------------------------------------------------------ the app


async def test_message_and_its_stream_carry_the_same_reply(client):
    whole = (await client.post("/v1/messages", json=ask())).json()
    assert whole["content"] == [{"type": "text", "text": "Hello, world!"}]
    assert whole["stop_reason"] == "end_turn" and whole["id"].startswith("msg_")
    streamed = await client.post("/v1/messages", json=ask(stream=True))
    events = sse_events(streamed.text)
    names = " ".join(name for name, _ in events)
    assert re.fullmatch(
        "message_start ping content_block_start( content_block_delta)+ content_block_stop "
        "message_delta message_stop",
        names,
    ), names
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == "Hello, world!"
    delta = events[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"] == whole["usage"]


async def test_a_tool_call_streams_as_a_tool_use_block_after_the_text():
    engine = ScriptedEngine(n_ctx=1024, reply=["Sure. ", CALL])
    async for client in scripted_client(engine):
        whole = (await client.post("/v1/messages", json=ask(tools=[WEATHER]))).json()
        assert whole["stop_reason"] == "tool_use"
        text, use = whole["content"]
        assert text == {"type": "text", "text": "Sure."}
        assert use["type"] == "tool_use" and use["id"].startswith("toolu_")
        assert (use["name"], use["input"]) == ("get_weather", {"city": "Paris"})
        streamed = await client.post("/v1/messages", json=ask(tools=[WEATHER], stream=True))
        events = sse_events(streamed.text)
        starts = [data["content_block"] for name, data in events if name == "content_block_start"]
        assert [start["type"] for start in starts] == ["text", "tool_use"]
        assert starts[1]["input"] == {} and starts[1]["name"] == "get_weather"
        partial = [
            data["delta"]["partial_json"]
            for name, data in events
            if name == "content_block_delta" and data["delta"]["type"] == "input_json_delta"
        ]
        assert json.loads("".join(partial)) == {"city": "Paris"}
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_a_tool_use_id_sent_back_answers_its_tool_result(client):
    body = ask(
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}}
                ],
            },
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9"}]},
        ],
    )
    assert (await client.post("/v1/messages", json=body)).status_code == 200


async def test_count_tokens_counts_what_a_message_request_reads():
    engine = ScriptedEngine(n_ctx=1024)
    async for client in scripted_client(engine):
        body = ask(system="Be brief.", tools=[WEATHER])
        counted = await client.post("/v1/messages/count_tokens", json=body)
        assert counted.status_code == 200, counted.text
        await client.post("/v1/messages", json=body)
        assert counted.json() == {"input_tokens": engine.count_tokens(engine.requests[-1].prompt)}


async def test_count_tokens_counts_a_conversation_too_long_for_the_context():
    engine = ScriptedEngine(n_ctx=64)
    async for client in scripted_client(engine):
        long = ask(messages=[{"role": "user", "content": "word " * 200}])
        assert (await client.post("/v1/messages", json=long)).status_code == 400
        counted = await client.post("/v1/messages/count_tokens", json=long)
        assert counted.json()["input_tokens"] > 200


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t"}]}
                ]
            },
            "'t', which no earlier tool_use",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages[0].content[0]': image blocks are not supported",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
        ),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "nope"}}, "nope"),
        ({"tool_choice": {"type": "any"}}, "needs tools"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0].type"),
        ({"messages": [{"role": "system", "content": "Hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": "\ud800"}]}, "lone UTF-16 surrogate"),
        ({"grammar": 'root ::= "a"', "tools": [WEATHER]}, "grammar"),
    ],
)
async def test_bad_requests_are_400_invalid_request_error_naming_the_field(client, body, says):
    sent = {key: value for key, value in ask(**body).items() if value is not None}
    response = await client.post(
        "/v1/messages",
        content=json.dumps(sent, ensure_ascii=True),
        headers={"content-type": "application/json"},
    )
    assert says in assert_anthropic_error(response, 400, "invalid_request_error")


async def test_errors_under_v1_messages_are_anthropic_shaped_elsewhere_openai_shaped(client):
    assert_anthropic_error(await client.get("/v1/messages"), 405, "invalid_request_error")
    assert_anthropic_error(
        await client.post("/v1/messages/batches", json={}), 404, "not_found_error"
    )
    unknown = await client.post("/v1/messages", json=ask(model="claude-nope"))
    assert "claude-nope" in assert_anthropic_error(unknown, 404, "not_found_error")
    broken = await client.post(
        "/v1/messages", content=b"{", headers={"content-type": "application/json"}
    )
    assert_anthropic_error(broken, 400, "invalid_request_error")
    openai = await client.post("/v1/chat/completions", json={})
    assert set(openai.json()["error"]) == {"message", "type", "param", "code"}
    # A path that merely begins like it is not the Messages API.
    assert "param" in (await client.post("/v1/messagesx", json={})).json()["error"]


async def test_the_api_key_comes_from_x_api_key_or_bearer():
    async for client in scripted_client(ScriptedEngine(n_ctx=1024), api_key="sesame"):
        missing = await client.post("/v1/messages", json=ask())
        assert "x-api-key" in assert_anthropic_error(missing, 401, "authentication_error")
        wrong = await client.post("/v1/messages", json=ask(), headers={"x-api-key": "nope"})
        assert_anthropic_error(wrong, 401, "authentication_error")
        for header in ({"x-api-key": "sesame"}, {"Authorization": "Bearer sesame"}):
            right = await client.post(
                "/v1/messages",
                json=ask(),
                headers={**header, "anthropic-version": "2023-06-01", "anthropic-beta": "x"},
            )
            assert right.status_code == 200, right.text
        # OpenAI's clients may send their key as x-api-key too.
        chat = {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}]}
        openai = await client.post(
            "/v1/chat/completions", json=chat, headers={"x-api-key": "sesame"}
        )
        assert openai.status_code == 200


async def test_body_too_large_under_v1_messages_is_413_request_too_large():
    async for client in scripted_client(ScriptedEngine(), max_body_bytes=2048):
        big = ask(messages=[{"role": "user", "content": "x" * 5000}])
        response = await client.post("/v1/messages", json=big)
        assert_anthropic_error(response, 413, "request_too_large")


@dataclass
class FullEngine(ScriptedEngine):
    def submit(self, request: GenerationRequest) -> ScriptedGeneration:
        raise QueueFull("Every slot is busy.", retry_after=3)


async def test_a_full_queue_is_529_overloaded_error_with_retry_after():
    async for client in scripted_client(FullEngine(n_ctx=1024)):
        response = await client.post("/v1/messages", json=ask())
        assert_anthropic_error(response, 529, "overloaded_error")
        assert response.headers["retry-after"] == "3"


async def test_an_error_after_the_stream_began_is_an_error_event():
    engine = ScriptedEngine(n_ctx=1024, fail_after=GenerationFailed("decode failed"))
    async for client in scripted_client(engine):
        response = await client.post("/v1/messages", json=ask(stream=True))
        assert response.status_code == 200
        name, data = sse_events(response.text)[-1]
        assert name == "error" and data["error"]["type"] == "api_error"
        assert "decode failed" in data["error"]["message"]
