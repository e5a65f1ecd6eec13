"""/openapi.json describes the errors the server really sends; /docs and /redoc are off."""

from __future__ import annotations

import jsonschema
import pytest

from .scripted_engine import ScriptedEngine, scripted_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_every_api_route_documents_its_apis_error_bodies_and_no_422():
    """/openapi.json documented only 200 and 422, which the server never sends."""
    async for client in scripted_client(ScriptedEngine()):
        schema = (await client.get("/openapi.json")).json()
        wrong = await client.post("/v1/chat/completions", json={"model": "scripted"})
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            if path.startswith("/v1/"):
                # The Messages API answers its errors in Anthropic's shape (and 529 too).
                shape = "Anthropic" if path.startswith("/v1/messages") else ""
                for status in ("400", "401", "404", "413", "500", "503"):
                    body = responses[status]["content"]["application/json"]["schema"]
                    assert body == {"$ref": f"#/components/schemas/{shape}ErrorResponse"}
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    # The body the server sends for a bad request is the one documented.
    assert wrong.status_code == 400
    documented = {"$ref": "#/components/schemas/ErrorResponse", "components": schema["components"]}
    jsonschema.validate(wrong.json(), documented)


async def test_docs_pages_that_load_a_cdn_are_not_served():
    async for client in scripted_client(ScriptedEngine()):
        for page in ("/docs", "/redoc", "/docs/oauth2-redirect"):
            response = await client.get(page)
            assert response.status_code == 404
            assert "cdn" not in response.text.lower()
