"""The API key guard. (FastAPI's max_body_size enforces the body limit.)"""

from __future__ import annotations

import hmac

from fastapi import Request

from hearth.server.errors import Unauthorized
from hearth.server.state import server_state


def require_api_key(request: Request) -> None:
    expected = server_state(request).settings.api_key
    if not expected:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'."
        )
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("Incorrect API key provided.")
