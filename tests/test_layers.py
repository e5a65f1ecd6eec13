"""The layers' direction: server -> runtime -> engine, never back; llama.cpp in the engine only.

Read from the source (every import, lazy ones inside functions included), so a new module
is checked the day it lands. convert/ keeps its own uses of llama_cpp (the quantizer).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Each layer's folder, and the hearth packages it must never import.
FORBIDDEN = {
    "engine": ("hearth.runtime", "hearth.server", "hearth.prompts", "hearth.convert"),
    "prompts": ("hearth.engine", "hearth.runtime", "hearth.server"),
    "runtime": ("hearth.server",),
}
# Web frameworks belong to the HTTP layer.
HTTP = ("fastapi", "starlette", "sse_starlette", "uvicorn")
LLAMA = "llama_cpp"


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize("folder", list(FORBIDDEN))
def test_a_layer_never_imports_the_layers_above_it(folder):
    wrong = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules(folder)
        for name in imports_of(path)
        if any(under(name, banned) for banned in FORBIDDEN[folder])
    }
    assert not wrong, sorted(wrong)


@pytest.mark.parametrize("folder", ["engine", "runtime", "prompts"])
def test_only_the_server_speaks_http(folder):
    wrong = {
        f"{path.relative_to(REPO)}: {name}"
        for path in modules(folder)
        for name in imports_of(path)
        if any(under(name, framework) for framework in HTTP)
    }
    assert not wrong, sorted(wrong)


def test_llama_cpp_is_imported_by_the_engine_alone():
    outside = [
        f"{path.relative_to(REPO)}: {name}"
        for folder in ("hearth", "runtime", "server", "prompts")
        for path in modules(folder)
        for name in imports_of(path)
        if under(name, LLAMA)
    ]
    assert not outside
    # The rule would pass vacuously if the engine stopped importing llama_cpp under it.
    assert any(under(name, LLAMA) for path in modules("engine") for name in imports_of(path))


def test_the_three_layers_are_top_level_packages():
    for folder in ("engine", "runtime", "server"):
        assert (REPO / folder / "__init__.py").is_file(), folder


def test_the_readme_map_names_every_module_of_the_three_layers():
    """The README's map listed 11 of server/'s 23 modules; a module it leaves out is one a
    newcomer cannot place."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## How it is built") :]
    section = section[: section.index("```", section.index("```") + 3)]
    missing = [
        str(path.relative_to(REPO))
        for folder in ("engine", "runtime", "server")
        for path in modules(folder)
        if path.name != "__init__.py"
        and path.name not in section
        # A module of a sub-folder (an endpoint's router, protocol, serving) may be named
        # by its folder instead.
        and not (path.parent != REPO / folder and f"{path.parent.name}/" in section)
    ]
    assert not missing, missing


def test_every_stream_goes_through_the_one_wrapper():
    """The drain guard lived in the chat stream writer only, so a /v1/responses stream cut by
    SIGTERM ended torn: every stream must be built by server/streaming.py."""
    builders = [
        str(path.relative_to(REPO))
        for path in modules("server")
        if "EventSourceResponse(" in path.read_text()
    ]
    assert builders == ["server/streaming.py"]
