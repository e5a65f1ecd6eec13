"""Who may reach the API from a browser: CORS for chosen origins, and the Host check.

A server on loopback is still reachable by any web page through DNS rebinding: the page's
own domain is made to resolve to 127.0.0.1, and the browser then treats the API as
same-origin. The Host header still names the attacker's domain, so when bound to loopback
only loopback names (and --allowed-hosts) are served. On another address the operator has
chosen to expose the server and names are not checked.
"""

from __future__ import annotations

import ipaddress

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.runtime.settings import ServerSettings
from hearth.server.errors import HostNotAllowed, error_response

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    name = host.lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a Host header, without its port: "[::1]:8080" -> "::1"."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class HostGuard:
    """Answers 403 to requests whose Host is neither a loopback name nor allowed."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host_name(header).lower()
            # No Host at all (HTTP/1.0 tools) cannot come from a browser page.
            if header and not is_loopback(name) and name not in self.allowed:
                refused = HostNotAllowed(
                    "This server answers only to localhost names; add this host with "
                    "--allowed-hosts to serve it.",
                )
                await error_response(refused, scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_origin_guards(app: FastAPI, settings: ServerSettings) -> None:
    """CORS inside, the Host check outside it (Starlette runs the last added first)."""
    origins = settings.cors_origin_list()
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            # SDKs send their own headers (x-stainless-*); no cookies are involved, so "*"
            # admits nothing a listed origin could not already send.
            allow_headers=["*"],
            expose_headers=["Retry-After", "X-Hearth-Dropped-Messages", "X-Request-Id"],
            max_age=600,
        )
    if is_loopback(settings.host):
        app.add_middleware(HostGuard, allowed=settings.allowed_host_list())
