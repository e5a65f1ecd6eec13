"""Packaging: one import name, prompts shipped as data, and a Dockerfile that lints clean."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

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
