"""/v1/files and /v1/batches in-process around a scripted engine: shapes and refusals.

The real model runs them end to end in tests/e2e/test_batches.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from .scripted_engine import ScriptedEngine, scripted_client
from .test_app import assert_openai_error

pytestmark = pytest.mark.anyio

LINE = {
    "custom_id": "one",
    "method": "POST",
    "url": "/v1/chat/completions",
    "body": {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}]},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    settings = {"library_dir": tmp_path, "max_body_bytes": 1024, "max_file_bytes": 4096}
    async for c in scripted_client(ScriptedEngine(), **settings):
        yield c


async def upload(client: httpx.AsyncClient, content: bytes, purpose: str = "batch"):
    return await client.post(
        "/v1/files", files={"file": ("in.jsonl", content)}, data={"purpose": purpose}
    )


async def test_a_batch_runs_through_the_chat_endpoint_and_cannot_be_cancelled_once_done(client):
    # Larger than --max-body-bytes, within --max-file-bytes: uploads have their own limit.
    content = (json.dumps(LINE) + "\n").encode() + b"\n" * 1500
    uploaded = await upload(client, content)
    assert uploaded.status_code == 200, uploaded.text
    file = uploaded.json()
    assert (file["object"], file["purpose"], file["bytes"]) == ("file", "batch", len(content))
    made = await client.post(
        "/v1/batches",
        json={
            "input_file_id": file["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert made.status_code == 200, made.text
    batch_id = made.json()["id"]
    for _ in range(500):
        batch = (await client.get(f"/v1/batches/{batch_id}")).json()
        if batch["status"] == "completed":
            break
        await asyncio.sleep(0.01)
    assert batch["request_counts"] == {"completed": 1, "failed": 0, "total": 1}
    output = (await client.get(f"/v1/files/{batch['output_file_id']}/content")).text
    row = json.loads(output)
    assert row["custom_id"] == "one" and row["response"]["body"]["object"] == "chat.completion"
    refused = await client.post(f"/v1/batches/{batch_id}/cancel")
    error = assert_openai_error(refused, 409)
    assert error["message"] == "Cannot cancel a batch with status 'completed'."
    listed = (await client.get("/v1/batches", params={"limit": 1})).json()
    assert [b["id"] for b in listed["data"]] == [batch_id] and not listed["has_more"]


async def test_bad_uploads_and_bad_batches_are_clear_4xx(client):
    error = assert_openai_error(await upload(client, b"{}" + b" " * 5000), 413)
    assert "4096" in error["message"]
    assert_openai_error(await upload(client, b"a,b\n1,2\n"), 400, "file")
    assert_openai_error(await upload(client, b"{}\n", purpose="fine-tune"), 400, "purpose")
    assert_openai_error(await client.post("/v1/files", data={"purpose": "batch"}), 400, "file")
    assert_openai_error(await client.get("/v1/files/file-nope"), 404)
    missing = await client.post(
        "/v1/batches",
        json={
            "input_file_id": "file-nope",
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
    )
    assert_openai_error(missing, 404, "input_file_id")
    file_id = (await upload(client, (json.dumps(LINE) + "\n").encode())).json()["id"]
    for field, value in (("endpoint", "/v1/moderations"), ("completion_window", "1h")):
        body = {
            "input_file_id": file_id,
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        assert_openai_error(
            await client.post("/v1/batches", json={**body, field: value}), 400, field
        )
    assert_openai_error(await client.post("/v1/batches/batch_nope/cancel"), 404)
    assert_openai_error(
        await client.get("/v1/batches", params={"after": "batch_nope"}), 400, "after"
    )
