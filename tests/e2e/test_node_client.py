"""End to end: the official openai-node client (what Vercel's AI SDK and most JavaScript
apps build on) and Anthropic's TypeScript SDK against a real `hearth serve`, through their
own stream helpers.

`make node` installs Node.js (when missing) and the clients from tests/node/package-lock.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

NODE_TESTS = Path(__file__).resolve().parent.parent / "node"


@pytest.fixture(scope="module")
def results(server, model_id) -> dict:
    node = shutil.which("node")
    packages = [NODE_TESTS / "node_modules" / name for name in ("openai", "@anthropic-ai/sdk")]
    if node is None or not all(package.is_dir() for package in packages):
        pytest.fail("Node.js or a client package is missing: run `make node`")
    run = subprocess.run(
        [node, str(NODE_TESTS / "clients.mjs"), server.api, model_id],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_responses_stream_helper_rebuilds_the_streamed_reply(results):
    responses = results["responses"]
    assert responses["status"] == "completed" and responses["id"].startswith("resp_")
    assert responses["text"] and responses["text"] == responses["deltas"]
    types = responses["types"]
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "response.output_text.done" in types


def test_chat_stream_helper_assembles_a_required_tool_call(results):
    chat = results["chat_tools"]
    assert chat["finish_reason"] == "tool_calls" and chat["content"] is None
    assert chat["calls"]
    for call in chat["calls"]:
        assert call["name"] == "get_weather" and call["id"]
        assert isinstance(json.loads(call["arguments"])["city"], str)


def test_anthropic_stream_helper_rebuilds_the_streamed_message(results):
    messages = results["messages"]
    assert messages["id"].startswith("msg_") and messages["stop_reason"] in (
        "end_turn",
        "max_tokens",
    )
    assert messages["text"] and messages["text"] == messages["deltas"]
    types = messages["types"]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    assert messages["usage"]["output_tokens"] > 0


def test_anthropic_stream_helper_assembles_a_forced_tool_use(results):
    tools = results["messages_tools"]
    assert tools["stop_reason"] == "tool_use" and tools["uses"]
    for use in tools["uses"]:
        assert use["name"] == "get_weather" and use["id"].startswith("toolu_")
        assert isinstance(use["input"]["city"], str)
    assert json.loads(tools["partial"]) == tools["uses"][0]["input"]
    assert tools["input_tokens"] > 0


def test_anthropic_client_raises_its_typed_error_for_an_image(results):
    assert results["messages_error"] == {
        "raised": "BadRequestError",
        "status": 400,
        "type": "invalid_request_error",
    }
