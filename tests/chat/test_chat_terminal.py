"""`hearth chat` driven through a pseudo-terminal, with the real SmolLM2 model in process."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pexpect
import pytest

# The console script of the venv running the tests.
HEARTH = str(Path(sys.executable).with_name("hearth"))

pytestmark = pytest.mark.slow

PROMPT = "> "
USER_COLOUR = "\x1b[1;32m"


def spawn(env: dict[str, str], *flags: str) -> pexpect.spawn:
    child = pexpect.spawn(
        HEARTH, ["chat", *flags], env=env, encoding="utf-8", timeout=60, dimensions=(50, 200)
    )
    child.expect(r"Chatting with \S+ \(")
    child.expect_exact(PROMPT)
    return child


def test_question_streamed_reply_ctrl_c_and_exit(chat_env: dict[str, str]) -> None:
    child = spawn(chat_env, "--prompt", "chat-with-bob", "--max-tokens", "600")
    child.sendline("What is the capital of France?")
    child.expect_exact(PROMPT)
    exchange = child.before
    assert USER_COLOUR + "What is the capital of France?" in exchange  # the user's text, coloured
    reply = exchange.split("\x1b[0m", 1)[1]
    assert "Paris" in reply
    assert "User:" not in reply and "Bob:" not in reply  # no label leaks, before or after
    assert "max-tokens" not in reply  # it ended at the stop, which the model did write

    # A reply long enough to interrupt: text arrives while it is still being generated, and
    # Ctrl-C stops it without leaving the chat.
    child.sendline("Write a long story about a dragon.")
    child.expect_exact("Write a long story about a dragon.\r\n")
    child.expect(r"\w[^\n]{80}")  # part of the reply is on screen, far from its end
    child.sendintr()
    child.expect_exact("(stopped)")
    child.expect_exact(PROMPT)

    child.sendline("What is the capital of France?")
    child.expect_exact(PROMPT)
    assert child.before.strip(), "no answer after an interrupted reply"

    child.sendline("/reset")
    child.expect_exact("(conversation cleared)")
    child.expect_exact(PROMPT)
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "What is the capital of France?" in Path(chat_env["HEARTH_HISTORY_FILE"]).read_text()


def test_template_chat_hides_control_tokens_and_ctrl_d_quits(chat_env: dict[str, str]) -> None:
    child = spawn(chat_env)  # the model's own template
    child.sendline("Say hello.")
    child.expect_exact(PROMPT)
    reply = child.before.split("\x1b[0m", 1)[1]
    assert reply.strip() and "<|" not in reply and "max-tokens" not in reply
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_piped_output_is_plain_text(run_chat) -> None:
    result = run_chat(
        "--prompt",
        "chat-with-bob",
        "--max-tokens",
        "40",
        stdin="Hello, who are you?\n",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[0].startswith("Chatting with ")
    assert re.search(r"\w", lines[1].removeprefix(PROMPT)), result.stdout


def test_bad_prompt_file_fails_at_start(run_chat, tmp_path: Path) -> None:
    broken = tmp_path / "broken.txt"
    broken.write_text("Only a preamble, no dialog at all.")
    result = run_chat("--prompt", str(broken), timeout=120)
    assert result.returncode == 1
    assert str(broken) in result.stderr and "does not end with the user's label" in result.stderr


DIM = "\x1b[2m"


@pytest.fixture(scope="module")
def r1_model(real_templates: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled model with a DeepSeek-R1 distill's template: its prompt opens `<think>`,
    so the reply starts as reasoning."""
    from tests.conftest import R1_TEMPLATE, with_template

    return with_template(real_templates / R1_TEMPLATE, tmp_path_factory.mktemp("r1") / "r1.gguf")


def test_thinking_is_dimmed_on_a_terminal_and_plain_when_piped(chat_env, run_chat, r1_model):
    child = spawn(chat_env, "--model", str(r1_model), "--max-tokens", "16")
    child.sendline("What is the capital of France?")
    child.expect_exact(PROMPT)
    reply = child.before.split("\x1b[0m", 1)[1]
    assert DIM in reply and re.search(r"\x1b\[2m[^\x1b]*\w", reply), reply
    assert "think>" not in reply
    child.sendeof()
    child.expect(pexpect.EOF)
    piped = run_chat("--model", str(r1_model), "--max-tokens", "16", stdin="Hi\n", timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert "\x1b[" not in piped.stdout and "think>" not in piped.stdout
