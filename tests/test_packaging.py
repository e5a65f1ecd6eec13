"""Packaging: one import name, prompts shipped as data, a plain install that serves, and a
Dockerfile that lints clean."""

from __future__ import annotations

import ast
import importlib.metadata
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
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
    )
    return zipfile.ZipFile(next(out.glob("hearth-*.whl")))


def test_wheel_installs_everything_under_hearth_and_nothing_bare(wheel):
    top_level = {name.split("/")[0] for name in wheel.namelist() if not name.startswith("hearth-")}
    assert top_level == {"hearth"}
    names = set(wheel.namelist())
    for module in (
        "hearth/server/app.py",
        "hearth/prompts/__init__.py",
        "hearth/convert/__init__.py",
    ):
        assert module in names
    assert "hearth/prompts/chat-with-bob.txt" in names


def test_console_script_is_hearth(wheel):
    entry_points = next(n for n in wheel.namelist() if n.endswith("entry_points.txt"))
    assert "hearth = hearth.cli:main" in wheel.read(entry_points).decode()


def _distribution(requirement: str) -> str:
    """`llama-cpp-python[server]==0.3.36` -> `llama-cpp-python` (PEP 503 normalized)."""
    name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(
        isinstance(c, ast.Name) and c.id in ("ImportError", "ModuleNotFoundError") for c in caught
    )


def _imports(node: ast.AST, where: str = "module"):
    """(top-level module, where): "module" at import time, "function" when a call imports it,
    "optional" inside a try that handles its ImportError."""
    for child in ast.iter_child_nodes(node):
        inner = where
        if isinstance(child, ast.Try) and any(map(_catches_import_error, child.handlers)):
            inner = "optional"
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and where == "module":
            inner = "function"
        if isinstance(child, ast.Import):
            yield from ((alias.name.split(".")[0], where) for alias in child.names)
        elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
            yield child.module.split(".")[0], where
        yield from _imports(child, inner)


def test_every_third_party_import_is_declared():
    """server/registry.py and server/settings.py imported psutil, which pyproject.toml did not
    declare, so a plain install's hearth died at start."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = pyproject["project"]
    folders = sorted(set(pyproject["tool"]["setuptools"]["package-dir"].values()))
    core = {_distribution(r) for r in project["dependencies"]}
    extras = {
        _distribution(r)
        for group, requirements in project["optional-dependencies"].items()
        if group != "dev"
        for r in requirements
    }
    owners = importlib.metadata.packages_distributions()
    undeclared = []
    for folder in folders:  # every folder that installs as part of hearth
        for path in sorted((REPO / folder).rglob("*.py")):
            for module, where in _imports(ast.parse(path.read_text(encoding="utf-8"))):
                if module in sys.stdlib_module_names or module == "hearth" or where == "optional":
                    continue
                found = {_distribution(d) for d in owners.get(module, [module])}
                if not found & (core if where == "module" else core | extras):
                    undeclared.append(f"{path.relative_to(REPO)}: {module} ({where})")
    assert undeclared == []


@pytest.mark.slow
@pytest.mark.e2e
def test_plain_install_without_extras_serves(wheel, tmp_path):
    """`pip install .` gave a `hearth` that died at start with "No module named 'psutil'":
    the code imported packages pyproject.toml did not declare."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The same pinned llama-cpp-python as the project's: pip takes the wheel it built then
    # from its cache instead of compiling llama.cpp again.
    subprocess.run(
        [
            venv / "bin" / "python",
            "-m",
            "pip",
            "install",
            "-qq",
            "--disable-pip-version-check",
            wheel.filename,
        ],
        check=True,
        timeout=1800,
    )
    hearth = str(venv / "bin" / "hearth")
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}  # an empty library: the bundled model only

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [hearth, *args],
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            cwd=tmp_path,
            timeout=300,
            check=False,
        )

    usage = run("--help")
    assert usage.returncode == 0 and "serve" in usage.stdout, usage.stderr
    listing = run("list")
    assert listing.returncode == 0, listing.stderr
    assert any(
        line.startswith("smollm2") and "bundled" in line for line in listing.stdout.splitlines()
    ), listing.stdout
    server = start_server(tmp_path, "--n-ctx", "512", env=env, hearth=[hearth])
    try:
        assert str(venv) in server.log()  # the installed copy's model path, not this checkout
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        reply = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8
        )
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


def test_every_package_folder_is_listed_for_setuptools():
    """A moved or new subpackage missing from pyproject's list is left out of a plain
    install, though the editable install a developer tests with still finds it."""
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    for name, folder in setuptools["package-dir"].items():
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            assert ".".join((name, *parts)) in listed, init.relative_to(REPO)
