"""Packaging: one import name, prompts shipped as data, a plain install that serves, and a
Dockerfile that lints clean."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import openai
import pytest
import tomllib

from tests.conftest import start_server

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO)],
        check=True,
    )
    return zipfile.ZipFile(next(out.glob("hearth-*.whl")))


def test_wheel_installs_everything_under_hearth_and_nothing_bare(wheel):
    top_level = {name.split("/")[0] for name in wheel.namelist() if not name.startswith("hearth-")}
    assert top_level == {"hearth"}
    names = set(wheel.namelist())
    for module in ("hearth/server/app.py", "hearth/prompts/__init__.py", "hearth/convert/__init__.py"):
        assert module in names
    assert "hearth/prompts/chat-with-bob.txt" in names


def test_console_script_is_hearth(wheel):
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "hearth = hearth.cli:main" in wheel.read(entry_points).decode()


@pytest.mark.slow
@pytest.mark.e2e
def test_plain_install_without_extras_serves(wheel, tmp_path):
    """`pip install .` gave a `hearth` that died at start with "No module named 'psutil'":
    the code imported packages pyproject.toml did not declare."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The same pinned llama-cpp-python as the project's: pip takes the wheel it built then
    # from its cache instead of compiling llama.cpp again.
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "-qq",
                    "--disable-pip-version-check", wheel.filename], check=True, timeout=1800)
    hearth = str(venv / "bin" / "hearth")
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}  # an empty library: the bundled model only

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([hearth, *args], capture_output=True, text=True,
                              env={**os.environ, **env},
                              cwd=tmp_path, timeout=300, check=False)

    usage = run("--help")
    assert usage.returncode == 0 and "serve" in usage.stdout, usage.stderr
    listing = run("list")
    assert listing.returncode == 0, listing.stderr
    assert any(line.startswith("smollm2") and "bundled" in line
               for line in listing.stdout.splitlines()), listing.stdout
    server = start_server(tmp_path, "--n-ctx", "512", env=env, hearth=[hearth])
    try:
        assert str(venv) in server.log()  # the installed copy's model path, not this checkout
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        reply = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8)
        assert reply.choices[0].message.content
    finally:
        server.stop()


def test_dockerfile_lints_clean():
    result = subprocess.run(
        [Path(sys.executable).parent / "hadolint", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_copies_every_package_folder_and_installs_like_the_readme():
    dockerfile = (REPO / "Dockerfile").read_text()
    package_dir = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-dir"
    ]
    for folder in set(package_dir.values()):
        assert re.search(rf"^COPY {folder} \./{folder}$", dockerfile, re.MULTILINE), folder
    assert "pip install ." in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/health" in dockerfile
    assert re.search(r"^USER \d+$", dockerfile, re.MULTILINE)  # not root
    assert "EXPOSE 8080" in dockerfile and "HEARTH_HOST=0.0.0.0" in dockerfile
