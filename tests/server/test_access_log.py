"""Request ids, the one access line per request, and the generation metrics it feeds."""

from __future__ import annotations

import json
import logging
import re

import pytest

from hearth.server.access_log import JsonFormatter

from .scripted_engine import ScriptedEngine, scripted_client

pytestmark = pytest.mark.anyio

CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    return [r.access for r in caplog.records if r.name == "hearth.access"]


async def test_request_id_is_echoed_or_made_and_a_forged_one_is_replaced():
    async for client in scripted_client(ScriptedEngine()):
        given = await client.post(
            "/v1/chat/completions", json=CHAT, headers={"X-Request-Id": "client-42.a:b"}
        )
        assert given.headers["x-request-id"] == "client-42.a:b"
        made = await client.get("/health")
        assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
        forged = await client.get("/health", headers={"X-Request-Id": "a b\nstatus=200"})
        assert re.fullmatch(r"[0-9a-f]{32}", forged.headers["x-request-id"])
        error = await client.get("/v1/nowhere", headers={"X-Request-Id": "err-1"})
        assert error.status_code == 404 and error.headers["x-request-id"] == "err-1"


@pytest.mark.parametrize("stream", [False, True])
async def test_one_access_line_per_request_with_model_tokens_and_times(caplog, stream):
    caplog.set_level(logging.INFO, logger="hearth.access")
    async for client in scripted_client(ScriptedEngine()):
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": stream}, headers={"X-Request-Id": "r1"}
        )
        assert response.status_code == 200
        refused = await client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
        assert refused.status_code == 404
    lines = [line for line in access_lines(caplog) if line["route"] != "/health"]
    assert len(lines) == 2
    done, missing = lines
    assert done["request_id"] == "r1" and done["route"] == "/v1/chat/completions"
    assert done["model"] == "scripted" and done["status"] == 200
    assert done["completion_tokens"] == 4 and done["prompt_tokens"] > 0
    assert 0 <= done["ttft_ms"] <= done["total_ms"]
    assert missing["status"] == 404 and missing["model"] is None
    assert missing["request_id"] != "r1"


def test_json_log_format_writes_one_object_per_line():
    record = logging.LogRecord("hearth.access", logging.INFO, __file__, 1, "x", None, None)
    record.access = {"request_id": "r1", "status": 200, "ttft_ms": 12.5}
    entry = json.loads(JsonFormatter().format(record))
    assert entry["request_id"] == "r1" and entry["status"] == 200 and entry["level"] == "info"
    plain = logging.LogRecord("hearth", logging.WARNING, __file__, 1, "a %s", ("b",), None)
    assert json.loads(JsonFormatter().format(plain))["message"] == "a b"


async def test_metrics_count_ttft_inter_token_latency_and_tokens_per_model():
    async for client in scripted_client(ScriptedEngine()):
        for stream in (False, True):
            await client.post("/v1/chat/completions", json={**CHAT, "stream": stream})
        text = (await client.get("/metrics")).text
    assert 'hearth_time_to_first_token_seconds_count{model="scripted"} 2.0' in text
    assert 'hearth_inter_token_latency_seconds_count{model="scripted"} 2.0' in text
    assert 'hearth_generation_tokens_total{model="scripted"} 8.0' in text
    assert re.search(r'hearth_prompt_tokens_total\{model="scripted"\} [1-9]', text)
