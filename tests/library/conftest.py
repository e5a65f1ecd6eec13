"""The Hub stand-in on loopback, and `hearth` commands run against it as a user runs them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from hub_server import FakeHub, serve

from hearth.runtime.settings import bundled_model_path

GGUF_REPO = "test/SmolLM2-135M-Instruct-GGUF"
SPLIT_REPO = "test/Split-GGUF"


@dataclass
class Library:
    """A fresh HF cache and Hearth library, and the environment pointing at the hub."""

    root: Path
    env: dict[str, str]

    def hearth(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "hearth", *args],
            capture_output=True,
            text=True,
            env={**self.env, **env},
            cwd=self.root,
            timeout=timeout,
            check=False,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen:
        """`hearth ARGS` running, as a terminal starts it: with Ctrl-C (SIGINT) at its default.

        A test run started in the background by a non-interactive shell (`make test &`,
        nohup, some CI runners) has SIGINT ignored, children inherit that, and Python then
        never raises KeyboardInterrupt: the interrupt tests timed out while huggingface-hub
        retried the stalled download. exec keeps an ignored signal ignored but resets a
        handled one to its default, so SIGINT is handled here while the child starts (not
        preexec_fn, which is unsafe beside the fake Hub's threads).
        """
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return subprocess.Popen(
                [sys.executable, "-m", "hearth", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**self.env, **env},
                cwd=self.root,
            )
        finally:
            signal.signal(signal.SIGINT, previous)

    def interrupt_when_stalled(self, hub: FakeHub, *args: str, **env: str) -> tuple[int, bytes]:
        """Run `hearth ARGS`, press Ctrl-C once its download stalls half-way, and return its
        exit status and output (the hub is released whatever happens)."""
        process = self.popen(*args, **env)
        try:
            assert hub.stalled.wait(timeout=120), "the download never reached half-way"
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=60)
        finally:
            hub.release.set()
            if process.poll() is None:
                process.kill()
        return process.returncode, output

    @property
    def manifest(self) -> Path:
        return self.root / "data" / "hearth" / "pulled.json"


@pytest.fixture(scope="session")
def hub_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-files")
    readme = root / "README.md"
    readme.write_text("# a model card\n")
    parts = []
    for n in (1, 2):
        part = root / f"part{n}.bin"
        part.write_bytes(os.urandom(300_000))
        parts.append(part)
    return {"gguf": bundled_model_path(), "readme": readme, "part1": parts[0], "part2": parts[1]}


@pytest.fixture
def hub(hub_files: dict[str, Path]) -> Iterator[tuple[FakeHub, str]]:
    fake = FakeHub()
    fake.add(
        GGUF_REPO,
        {
            "README.md": hub_files["readme"],
            "SmolLM2-135M-Instruct-Q4_1.gguf": hub_files["gguf"],
            "SmolLM2-135M-Instruct-Q4_K_M.gguf": hub_files["gguf"],
        },
    )
    fake.add(
        SPLIT_REPO,
        {
            "big-Q8_0-00001-of-00002.gguf": hub_files["part1"],
            "big-Q8_0-00002-of-00002.gguf": hub_files["part2"],
            "big-Q4_0.gguf": hub_files["part1"],
        },
    )
    server = serve(fake)
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    fake.release.set()
    server.shutdown()


@pytest.fixture
def library(tmp_path: Path, hub: tuple[FakeHub, str]) -> Library:
    _, endpoint = hub
    env = {
        **os.environ,
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(tmp_path / "hf"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("HF_HUB_OFFLINE", "HF_TOKEN", "HEARTH_LIBRARY_DIR", "HEARTH_MODELS_DIR"):
        env.pop(name, None)
    (tmp_path / "models").mkdir()
    return Library(tmp_path, env)


def assert_one_line_failure(result, *phrases: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
