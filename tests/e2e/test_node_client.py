"""End to end: the official openai-node client (what Vercel's AI SDK and most JavaScript
apps build on) against a real `hearth serve`, through its own stream helpers.

`make node` installs Node.js (when missing) and the client from tests/node/package-lock.json.
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
    if node is None or not (NODE_TESTS / "node_modules" / "openai").is_dir():
        pytest.fail("Node.js or the openai package is missing: run `make node`")
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
