"""What a load balancer and its operator read from a replica: its name on every answer,
and its capacity in /health."""

from __future__ import annotations

import socket

import pytest

from .scripted_engine import ScriptedEngine, scripted_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


CHAT = {"model": "scripted", "messages": [{"role": "user", "content": "Hi"}]}


async def test_every_answer_names_the_replica_errors_included():
    async for client in scripted_client(ScriptedEngine(), replica_id="pod-7"):
        answers = [
            await client.post("/v1/chat/completions", json=CHAT),
            await client.post("/v1/chat/completions", json={"model": "nope", "messages": []}),
            await client.get("/no/such/route"),
            await client.get("/health"),
        ]
        assert [a.headers["x-hearth-replica"] for a in answers] == ["pod-7"] * 4
        assert [a.status_code for a in answers] == [200, 400, 404, 200]


async def test_the_replica_is_named_host_and_port_by_default():
    async for client in scripted_client(ScriptedEngine(), port=9123):
        health = await client.get("/health")
        assert health.headers["x-hearth-replica"] == f"{socket.gethostname()}:9123"
        assert health.json()["replica"] == f"{socket.gethostname()}:9123"


async def test_health_reports_the_capacity_a_balancer_sizes_its_limits_by():
    async for client in scripted_client(ScriptedEngine(), max_queue=7):
        capacity = (await client.get("/health")).json()["capacity"]
        assert capacity == {"slots": 1, "max_queue": 7, "busy": 0, "waiting": 0}
