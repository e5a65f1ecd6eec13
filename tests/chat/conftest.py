from __future__ import annotations

import os

import pytest


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
