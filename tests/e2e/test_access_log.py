"""End to end: request ids, JSON access lines and generation metrics from a real server."""

from __future__ import annotations

import json
import re

import httpx
import openai

from tests.conftest import start_server


def test_json_access_line_and_metrics_for_a_real_stream(tmp_path):
    server = start_server(tmp_path, "--log-format", "json", "--n-ctx", "512", "--parallel", "1")
    try:
        client = openai.OpenAI(base_url=server.api, api_key="none", max_retries=0)
        model = client.models.list().data[0].id
        stream = client.chat.completions.with_raw_response.create(
            model=model,
            messages=[{"role": "user", "content": "Count to five."}],
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Request-Id": "e2e-stream-1"},
        )
        assert stream.headers["x-request-id"] == "e2e-stream-1"
        chunks = list(stream.parse())  # the whole stream, so its access line is written
        usage = next(chunk.usage for chunk in chunks if chunk.usage)
        metrics = httpx.get(f"{server.url}/metrics").text
    finally:
        server.stop()
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert lines, server.log()
    mine = [line for line in lines if line.get("request_id") == "e2e-stream-1"]
    assert len(mine) == 1
    access = mine[0]
    assert access["route"] == "/v1/chat/completions" and access["status"] == 200
    assert access["model"] == model
    assert access["prompt_tokens"] == usage.prompt_tokens
    assert access["completion_tokens"] == usage.completion_tokens
    assert 0 < access["ttft_ms"] <= access["total_ms"]
    assert re.search(rf'hearth_time_to_first_token_seconds_count{{model="{model}"}} 1\.0', metrics)
    assert re.search(rf'hearth_inter_token_latency_seconds_count{{model="{model}"}} 1\.0', metrics)
    generated = rf'hearth_generation_tokens_total{{model="{model}"}} {usage.completion_tokens}\.0'
    assert re.search(generated, metrics)
