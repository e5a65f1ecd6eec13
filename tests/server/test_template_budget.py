"""A model whose chat template hangs or bloats fails its requests alone; the server serves on."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from hearth.prompts import model_template
from hearth.runtime.settings import ServerSettings
from hearth.server.app import create_app

from .scripted_engine import ScriptedEngine, scripted_registry

pytestmark = pytest.mark.anyio

HANGS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
BLOATS = "{{ 'a' * 20000000 }}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_hostile_template_is_a_500_chat_template_failed_and_others_are_served(monkeypatch):
    monkeypatch.setattr(model_template, "RENDER_SECONDS", 1.0)
    settings = ServerSettings.load({"web": False})
    engines = {
        "good": ScriptedEngine(),
        "hangs": ScriptedEngine(template=HANGS),
        "bloats": ScriptedEngine(template=BLOATS),
    }
    app = create_app(settings, scripted_registry(engines, settings, max_loaded=3))
    async with app.router.lifespan_context(app):
        while not app.state.hearth.ready:
            await asyncio.sleep(0.01)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:

            def ask(model: str) -> asyncio.Task[httpx.Response]:
                body = {"model": model, "messages": [{"role": "user", "content": "Hi"}]}
                return asyncio.create_task(client.post("/v1/chat/completions", json=body))

            hanging = ask("hangs")
            await asyncio.sleep(0.1)
            # While the hostile template renders, the server answers everyone else.
            assert (await client.get("/health")).status_code == 200
            assert (await ask("good")).status_code == 200
            assert not hanging.done()
            for response in (await hanging, await ask("bloats")):
                assert response.status_code == 500, response.text
                error = response.json()["error"]
                assert error["code"] == "chat_template_failed"
                assert error["type"] == "server_error"
                assert "chat template is broken" in error["message"]
            assert (await ask("good")).status_code == 200
