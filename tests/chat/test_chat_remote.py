"""`hearth chat --url`: the same chat against a real `hearth serve` process."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.conftest import start_server

# The console script of the venv running the tests.
HEARTH = str(Path(sys.executable).with_name("hearth"))

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def keyed_server(
    chat_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = {**chat_env, "HEARTH_API_KEY": "secret"}
    server = start_server(tmp_path_factory.mktemp("keyed"), "--parallel", "1", "--no-web", env=env)
    try:
        yield server.url
    finally:
        server.stop()


def test_chat_through_a_server(keyed_server: str, chat_env: dict[str, str]) -> None:
    flags = ["--url", keyed_server, "--api-key", "secret", "--prompt", "chat-with-bob"]
    child = pexpect.spawn(
        HEARTH, ["chat", *flags], env=chat_env, encoding="utf-8", timeout=60, dimensions=(50, 200)
    )
    child.expect(r"Chatting with \S+:chat-with-bob at http")
    child.expect_exact("> ")
    child.sendline("What is the capital of France?")
    child.expect_exact("> ")
    reply = child.before.split("\x1b[0m", 1)[1]
    assert "Paris" in reply and "User:" not in reply

    child.sendline("Write a long story about a dragon.")
    child.expect_exact("Write a long story about a dragon.\r\n")
    child.expect(r"\w[^\n]{80}")
    child.sendintr()
    child.expect_exact("(stopped)")
    child.expect_exact("> ")
    # The server has one slot: an answer now means the interrupted stream released it.
    child.sendline("What is the capital of France?")
    child.expect_exact("> ")
    assert "Paris" in child.before
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_wrong_key_is_one_clear_line(keyed_server: str, run_chat) -> None:
    result = run_chat("--url", keyed_server, "--api-key", "wrong")
    assert result.returncode == 1
    assert result.stderr.startswith("hearth chat: ") and "401" in result.stderr


def test_unknown_prompt_on_the_server_is_named(keyed_server: str, run_chat) -> None:
    result = run_chat("--url", keyed_server, "--api-key", "secret", "--prompt", "nope")
    assert result.returncode == 1
    assert ":nope" in result.stderr and ":chat-with-bob" in result.stderr
