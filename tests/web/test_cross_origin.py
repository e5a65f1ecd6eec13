"""Cross-origin use in a real browser: CORS for a listed origin, and DNS rebinding refused.

One `hearth serve --cors-origins http://127.0.0.1:A` and one static page server on port A.
The same page reached as http://localhost:A is another origin, which is not listed, so one
page server gives both a listed and an unlisted web app. Chromium does the preflight and
enforces the answer, which an in-process test cannot show.

Rebinding is simulated the way an attacker achieves it: Chromium's host resolver maps
`rebind.test` to 127.0.0.1, so a page on that name talks to Hearth as its own origin.
"""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import RunningServer, free_port, start_server
from tests.web.conftest import launch_chromium, sync_api

REBIND_NAME = "rebind.test"

# The web app a user opens on another origin: it streams one reply from Hearth with fetch,
# as a hosted chat front-end does, sending a JSON body and an Authorization-less request.
APP_PAGE = """<!doctype html>
<meta charset="utf-8">
<title>cross-origin app</title>
<script>
async function ask(api, model) {
  const response = await fetch(api + "/chat/completions", {
    method: "POST",
    headers: {"Content-Type": "application/json", "X-Client": "cross-origin-app"},
    body: JSON.stringify({model, stream: true, max_tokens: 8, temperature: 0,
                          messages: [{role: "user", content: "Say hello."}]}),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let body = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    body += decoder.decode(value, {stream: true});
  }
  return {status: response.status, requestId: response.headers.get("X-Request-Id"), body};
}
</script>
"""


@pytest.fixture(scope="module")
def app_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A static server for the app page on its own port; returns the port."""
    root = tmp_path_factory.mktemp("app")
    (root / "app.html").write_text(APP_PAGE)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture(scope="module")
def cors_server(
    tmp_path_factory: pytest.TempPathFactory, app_origin: int
) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path_factory.mktemp("cors"),
        "--n-ctx",
        "1024",
        "--cors-origins",
        f"http://127.0.0.1:{app_origin}",
        "--allowed-hosts",
        f"allowed.{REBIND_NAME}",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def rebinding_browser(playwright: sync_api.Playwright) -> Iterator[sync_api.Browser]:
    """Chromium whose resolver sends rebind.test and its subdomains to 127.0.0.1."""
    rules = f"--host-resolver-rules=MAP {REBIND_NAME} 127.0.0.1, MAP *.{REBIND_NAME} 127.0.0.1"
    browser = launch_chromium(playwright, rules)
    yield browser
    browser.close()


@pytest.fixture
def tab(rebinding_browser: sync_api.Browser) -> Iterator[sync_api.Page]:
    context = rebinding_browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def model_of(server: RunningServer) -> str:
    return httpx.get(f"{server.api}/models").json()["data"][0]["id"]


def test_a_listed_origin_streams_a_reply_through_the_preflight(tab, cors_server, app_origin):
    """A browser app on another origin got 405 to its preflight and could not call Hearth."""
    tab.goto(f"http://127.0.0.1:{app_origin}/app.html")
    # localhost, not 127.0.0.1: the API is another origin than the page whatever the port.
    result = tab.evaluate(
        "([api, model]) => ask(api, model)",
        [f"http://localhost:{cors_server.port}/v1", model_of(cors_server)],
    )
    assert result["status"] == 200
    assert (
        '"finish_reason":"length"' in result["body"] or '"finish_reason":"stop"' in result["body"]
    )
    assert result["body"].rstrip().endswith("data: [DONE]")
    assert result["requestId"], "X-Request-Id is exposed to the app for its bug reports"


def test_an_unlisted_origin_is_blocked_by_the_browser(tab, cors_server, app_origin):
    tab.goto(f"http://localhost:{app_origin}/app.html")
    error = tab.evaluate(
        "([api, model]) => ask(api, model).then(() => 'answered', e => e.name + ': ' + e.message)",
        [f"http://127.0.0.1:{cors_server.port}/v1", model_of(cors_server)],
    )
    assert error.startswith("TypeError"), error  # Chromium's "Failed to fetch": CORS refused


def test_a_rebound_name_gets_403_and_an_allowed_name_is_served(tab, cors_server):
    """A page on a domain rebound to 127.0.0.1 reached the local API as its own origin."""
    refused = tab.goto(f"http://{REBIND_NAME}:{cors_server.port}/v1/models")
    assert refused is not None and refused.status == 403
    assert '"host_not_allowed"' in tab.content()
    # The same resolver trick with a name the operator allowed reaches the API, so the 403
    # above is Hearth's Host check and not a resolver that failed.
    served = tab.goto(f"http://allowed.{REBIND_NAME}:{cors_server.port}/v1/models")
    assert served is not None and served.status == 200
    assert model_of(cors_server) in tab.content()


def test_the_chat_page_itself_is_refused_under_a_rebound_name(tab, cors_server):
    response = tab.goto(f"http://{REBIND_NAME}:{cors_server.port}/")
    assert response is not None and response.status == 403
