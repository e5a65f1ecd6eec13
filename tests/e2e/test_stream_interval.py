"""The stream interval on the real model, through the official openai client.

With a long interval, a streamed reply comes in fewer chunks than tokens, and nothing is
lost on the way: the text is the one a server that sends every token writes, and every
token's log probability is there, in order. The first token is never held back. The
interval is a second here, so that a slow machine still joins tokens; what the joining
spares a streamed token is measured by the benchmarks (README, Performance).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import RunningServer, start_server

pytestmark = pytest.mark.e2e

TOKENS = 40
QUESTION = [{"role": "user", "content": "Describe a walk along the sea on a windy day."}]
NO_END_OF_TURN = {"2": -100}  # SmolLM2's <|im_end|>: every reply runs to max_tokens


def serve(tmp_path: Path, interval_ms: int) -> Iterator[RunningServer]:
    running = start_server(
        tmp_path,
        *("--stream-interval-ms", str(interval_ms)),
        *("--parallel", "1", "--n-ctx", "512", "--no-speculate"),
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def joining(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serve(tmp_path_factory.mktemp("joining"), 1000)


@pytest.fixture(scope="module")
def every_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serve(tmp_path_factory.mktemp("every-token"), 0)


def streamed(server: RunningServer) -> tuple[list[str], list[list[bytes]], int]:
    """The reply's content chunks, each chunk's tokens (as bytes), and the usage's count."""
    client = openai.OpenAI(base_url=server.api, api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="smollm2",
        messages=QUESTION,
        max_tokens=TOKENS,
        temperature=0,
        logit_bias=NO_END_OF_TURN,
        logprobs=True,
        stream=True,
        stream_options={"include_usage": True},
    )
    texts, tokens, used = [], [], 0
    for chunk in stream:
        if chunk.usage is not None:
            used = chunk.usage.completion_tokens
        for choice in chunk.choices:
            if choice.delta.content:
                texts.append(choice.delta.content)
                assert choice.logprobs is not None and choice.logprobs.content
                tokens.append([bytes(entry.bytes or []) for entry in choice.logprobs.content])
    return texts, tokens, used


def test_a_long_interval_joins_tokens_and_loses_none(
    joining: RunningServer, every_token: RunningServer
) -> None:
    texts, tokens, used = streamed(joining)
    assert used == TOKENS
    assert sum(len(chunk) for chunk in tokens) == TOKENS
    assert len(texts) < TOKENS  # joined
    assert len(tokens[0]) == 1  # the first token went out alone, at once
    # Each chunk's text is what its tokens spell.
    for text, chunk in zip(texts, tokens, strict=True):
        assert b"".join(chunk).decode() == text

    plain_texts, plain_tokens, plain_used = streamed(every_token)
    assert plain_used == TOKENS
    assert [len(chunk) for chunk in plain_tokens] == [1] * TOKENS  # a chunk a token
    assert "".join(texts) == "".join(plain_texts)
    assert [t for chunk in tokens for t in chunk] == [t for chunk in plain_tokens for t in chunk]
