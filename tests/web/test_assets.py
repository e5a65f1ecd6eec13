"""The page's files as the server hands them out, without a browser."""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = [pytest.mark.e2e]

EXPECTED_TYPES = {
    ".js": "text/javascript",  # browsers refuse an ES module served under another type
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


def test_the_page_and_every_file_it_loads_are_served_with_their_types(server):
    index = httpx.get(f"{server.url}/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    referenced = set(re.findall(r'(?:src|href)="([\w./-]+)"', index.text))
    modules = httpx.get(f"{server.url}/app.js").text
    referenced |= set(re.findall(r'from "\./([\w.-]+)"', modules))
    for name in ("app.js", "page.js", "view.js", "markdown.js"):
        referenced |= set(
            re.findall(r'from "\./([\w.-]+)"', httpx.get(f"{server.url}/{name}").text)
        )
    assert {"app.js", "style.css", "markdown.js", "api.js", "store.js"} <= referenced
    for name in sorted(referenced):
        response = httpx.get(f"{server.url}/{name}")
        assert response.status_code == 200, name
        suffix = name[name.rfind(".") :]
        assert response.headers["content-type"].startswith(EXPECTED_TYPES[suffix]), (
            name,
            response.headers["content-type"],
        )


def test_the_api_is_still_under_v1_next_to_the_page(server):
    assert httpx.get(f"{server.api}/models").json()["data"][0]["id"] == "smollm2"
    missing = httpx.get(f"{server.url}/no-such-page")
    assert missing.status_code == 404
