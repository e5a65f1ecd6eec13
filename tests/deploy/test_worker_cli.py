"""`hearth worker` refuses what would expose llama.cpp's unauthenticated RPC protocol."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hearth.engine.rpc import is_private


def worker(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hearth", "worker", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("host", ["0.0.0.0", "8.8.8.8"])
def test_a_public_bind_is_refused_without_the_flag(host: str):
    refused = worker("--host", host)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "--allow-public-bind" in refused.stderr


@pytest.mark.parametrize(
    ("host", "private"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("10.1.2.3", True),
        ("192.168.1.20", True),
        ("0.0.0.0", False),
        ("8.8.8.8", False),
    ],
)
def test_loopback_and_private_addresses_are_the_ones_bound_freely(host: str, private: bool):
    assert is_private(host) is private
