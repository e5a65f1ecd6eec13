"""`hearth chat --model ID` picks any model of the library, in process or through a server."""

from __future__ import annotations

import pytest

from tests.conftest import GEMMA, start_server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUESTION = "What is the capital of France?\n"


def test_in_process_chat_with_a_library_model_by_id(run_chat, gemma_models_dir) -> None:
    chat = run_chat(
        "--model",
        GEMMA,
        "--models-dir",
        str(gemma_models_dir),
        "--prompt",
        "chat-with-bob",
        "--max-tokens",
        "16",
        stdin=QUESTION,
        timeout=120,
    )
    assert chat.returncode == 0, chat.stderr
    assert "Paris" in chat.stdout  # Gemma's answer; the bundled SmolLM2 does not give it


def test_chat_through_a_server_with_any_of_its_models(
    run_chat, chat_env, gemma_models_dir, tmp_path
) -> None:
    server = start_server(
        tmp_path,
        "--model",
        "smollm2",
        "--models-dir",
        str(gemma_models_dir),
        "--no-web",
        env=chat_env,
    )
    try:
        chat = run_chat(
            "--url",
            server.url,
            "--model",
            GEMMA,
            "--prompt",
            "chat-with-bob",
            "--max-tokens",
            "16",
            stdin=QUESTION,
            timeout=120,
        )
        assert chat.returncode == 0, chat.stderr
        assert "Paris" in chat.stdout
        unknown = run_chat("--url", server.url, "--model", "nope", stdin=QUESTION)
        assert unknown.returncode == 1 and "no model nope" in unknown.stderr
    finally:
        server.stop()


def test_unknown_model_in_process_is_one_line(run_chat, tmp_path) -> None:
    chat = run_chat("--model", "nope", "--models-dir", str(tmp_path), stdin=QUESTION)
    assert chat.returncode == 1
    assert chat.stderr.strip().splitlines() == [chat.stderr.strip()]
    assert "model not found: nope" in chat.stderr
