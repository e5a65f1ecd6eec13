from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The console script of the venv running the tests.
HEARTH = str(Path(sys.executable).with_name("hearth"))


@pytest.fixture(scope="module")
def chat_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a `hearth chat` child: its own history file, one thread, small context."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEARTH_")}
    env.update(
        HEARTH_HISTORY_FILE=str(tmp_path_factory.mktemp("chat") / "history"),
        HEARTH_THREADS="1",
        HEARTH_N_CTX="2048",
        HEARTH_TEMPERATURE="0",
        TERM="xterm",
    )
    env.pop("NO_COLOR", None)
    return env


@pytest.fixture
def run_chat(chat_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run `hearth chat ARGS` to its end, with piped input and captured output."""

    def run(*args: str, stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [HEARTH, "chat", *args],
            input=stdin,
            env=chat_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
