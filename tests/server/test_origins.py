"""CORS for chosen origins and the DNS-rebinding Host check, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from hearth.runtime.settings import ServerSettings

from .scripted_engine import ScriptedEngine, scripted_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def client_for(base_url: str, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    return scripted_client(ScriptedEngine(), base_url, **settings)


PREFLIGHT = {
    "origin": "https://chat.example",
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}


async def test_preflight_from_a_listed_origin_is_answered():
    """A browser app on another origin got 405 to its preflight and could not call Hearth."""
    async for client in client_for("http://localhost", cors_origins="https://chat.example"):
        response = await client.options("/v1/chat/completions", headers=PREFLIGHT)
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "https://chat.example"
        assert "POST" in response.headers["access-control-allow-methods"]
        models = await client.get("/v1/models", headers={"origin": "https://chat.example"})
        assert models.headers["access-control-allow-origin"] == "https://chat.example"


async def test_no_cors_headers_by_default_or_for_other_origins():
    async for client in client_for("http://localhost", cors_origins="https://chat.example"):
        other = await client.get("/v1/models", headers={"origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
    async for client in client_for("http://localhost"):
        plain = await client.get("/v1/models", headers={"origin": "https://chat.example"})
        assert "access-control-allow-origin" not in plain.headers


def test_any_origin_with_an_api_key_needs_an_explicit_opt_in():
    with pytest.raises(ValueError, match="cors-any-origin-with-api-key"):
        ServerSettings.load({"cors_origins": "*", "api_key": "k"})
    ServerSettings.load({"cors_origins": "*", "api_key": "k", "cors_any_origin_with_api_key": True})
    ServerSettings.load({"cors_origins": "*"})


@pytest.mark.parametrize("base_url", ["http://attacker.example:8080", "http://hearth"])
async def test_rebinding_host_is_refused_on_loopback(base_url):
    """A page on a domain rebound to 127.0.0.1 reached the local API."""
    async for client in client_for(base_url):
        response = await client.get("/v1/models")
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "host_not_allowed"


@pytest.mark.parametrize(
    "base_url", ["http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080"]
)
async def test_loopback_hosts_are_served(base_url):
    async for client in client_for(base_url):
        assert (await client.get("/v1/models")).status_code == 200


async def test_allowed_hosts_and_public_binds_are_served():
    async for client in client_for("http://hearth.lan", allowed_hosts="hearth.lan"):
        assert (await client.get("/v1/models")).status_code == 200
    async for client in client_for("http://hearth.lan", host="0.0.0.0"):
        assert (await client.get("/v1/models")).status_code == 200
