"""Timing one streamed chat completion, or text completion, from the client's side."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import httpx


@dataclass
class StreamResult:
    ttft: float  # seconds from sending to the first content
    tokens: int
    decode_seconds: float  # first content to last content
    wall: float
    finish_reason: str | None
    text: str

    @property
    def complete(self) -> bool:
        return self.finish_reason in ("stop", "length")

    @property
    def decode_rate(self) -> float:
        return (self.tokens - 1) / self.decode_seconds if self.decode_seconds > 0 else 0.0


async def stream_chat(
    client: httpx.AsyncClient,
    url: str,
    messages: list[dict],
    max_tokens: int,
    *,
    temperature: float = 0.0,
    seed: int | None = 42,
    logit_bias: dict[str, float] | None = None,
) -> StreamResult:
    body: dict = {"messages": messages}
    if seed is not None:  # None: no seed, as most chat clients send
        body["seed"] = seed
    if logit_bias:
        body["logit_bias"] = logit_bias
    return await _stream(client, f"{url}/v1/chat/completions", body, max_tokens, temperature)


async def stream_completion(
    client: httpx.AsyncClient, url: str, prompt: str, max_tokens: int
) -> StreamResult:
    """A greedy text completion of `prompt` (no chat template)."""
    return await _stream(client, f"{url}/v1/completions", {"prompt": prompt}, max_tokens, 0.0)


async def _stream(
    client: httpx.AsyncClient, endpoint: str, body: dict, max_tokens: int, temperature: float
) -> StreamResult:
    body = {
        "model": "bench",
        **body,
        "max_tokens": max_tokens,
        "temperature": temperature,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = last = None
    chunks, usage_tokens, finish, parts = 0, None, None, []
    async with client.stream("POST", endpoint, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage_tokens = chunk["usage"]["completion_tokens"]
            for choice in chunk.get("choices") or []:
                # A chat chunk carries its text in the delta, a completion chunk in `text`.
                content = (choice.get("delta") or {}).get("content") or choice.get("text")
                if content:
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    chunks += 1
                    parts.append(content)
                finish = choice.get("finish_reason") or finish
    ended = time.perf_counter()
    first = first or ended
    return StreamResult(
        ttft=first - started,
        tokens=usage_tokens or chunks,
        decode_seconds=(last or first) - first,
        wall=ended - started,
        finish_reason=finish,
        text="".join(parts),
    )
