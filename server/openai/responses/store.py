"""Responses kept in memory for `previous_response_id`, bounded in number and in time.

Nothing is written to disk: a private server keeps conversations only as long as it runs,
and `store: false` keeps nothing at all.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from hearth.runtime.errors import NotFound
from hearth.server.openai.protocol import ChatMessage
from hearth.server.openai.responses.protocol import Response

MAX_STORED = 512
TTL_SECONDS = 3600.0


@dataclass(frozen=True)
class StoredResponse:
    response: Response
    conversation: list[ChatMessage]  # every turn up to and including this response's reply
    stored_at: float


class ResponseStore:
    def __init__(self, max_stored: int = MAX_STORED, ttl: float = TTL_SECONDS) -> None:
        self._kept: OrderedDict[str, StoredResponse] = OrderedDict()
        self._max = max_stored
        self._ttl = ttl

    def put(self, response: Response, conversation: list[ChatMessage]) -> None:
        self._expire()
        self._kept[response.id] = StoredResponse(response, conversation, time.monotonic())
        while len(self._kept) > self._max:
            self._kept.popitem(last=False)

    def get(self, response_id: str, param: str = "response_id") -> StoredResponse:
        self._expire()
        found = self._kept.get(response_id)
        if found is None:
            raise NotFound(
                f"No response with id '{response_id}' is stored here (responses are kept "
                f"in memory for {self._ttl / 60:.0f} minutes, and never with store: false).",
                param=param,
            )
        return found

    def delete(self, response_id: str) -> None:
        self.get(response_id)
        del self._kept[response_id]

    def _expire(self) -> None:
        limit = time.monotonic() - self._ttl
        while self._kept:
            oldest = next(iter(self._kept.values()))
            if oldest.stored_at >= limit:
                break
            self._kept.popitem(last=False)
