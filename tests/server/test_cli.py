"""`hearth serve` start-up: settings precedence, the banner, and one-line failures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hearth.flags import add_settings_flags, settings_from_args
from hearth.runtime.library import ModelLibrary
from hearth.runtime.settings import ServerSettings, bundled_model_path


def serve(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hearth", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


def parse(argv: list[str]) -> ServerSettings:
    import argparse

    parser = argparse.ArgumentParser()
    add_settings_flags(parser, ServerSettings)
    return settings_from_args(ServerSettings, parser.parse_args(argv))


def test_flag_beats_environment_beats_config_file(tmp_path, monkeypatch):
    config = tmp_path / "hearth.toml"
    config.write_text('port = 9001\nn_ctx = 1024\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("HEARTH_N_CTX", "2048")
    settings = parse(["--config", str(config), "--port", "9100"])
    assert settings.port == 9100  # flag
    assert settings.n_ctx == 2048  # environment over file
    assert settings.host == "0.0.0.0"  # file over default


def test_defaults_are_private_and_local(monkeypatch):
    for name in ("HEARTH_HOST", "HEARTH_PORT", "HEARTH_N_GPU_LAYERS"):
        monkeypatch.delenv(name, raising=False)
    settings = parse([])
    assert (settings.host, settings.port, settings.n_gpu_layers) == ("127.0.0.1", 8080, 0)
    assert settings.threads >= 1


def test_default_model_is_the_first_gguf_in_models_else_the_bundled_one(tmp_path):
    models = tmp_path / "models"
    library = ModelLibrary.scan(ServerSettings.load({"models_dir": models}))
    assert (library.default.id, library.default.path) == ("smollm2", bundled_model_path())
    models.mkdir()
    (models / "b.gguf").write_bytes(b"")
    (models / "a.gguf").write_bytes(b"")
    (models / "c-00001-of-00002.gguf").write_bytes(b"")
    (models / "c-00002-of-00002.gguf").write_bytes(b"")
    library = ModelLibrary.scan(ServerSettings.load({"models_dir": models}))
    assert [spec.id for spec in library.specs] == ["a", "b", "c", "smollm2"]
    assert library.default.path == models / "a.gguf"
    chosen = ModelLibrary.scan(ServerSettings.load({"models_dir": models, "model": "b.gguf"}))
    assert (chosen.default.id, chosen.default.path) == ("b", models / "b.gguf")
    by_id = ModelLibrary.scan(ServerSettings.load({"models_dir": models, "model": "c"}))
    assert by_id.default.path == models / "c-00001-of-00002.gguf"
    aliased = ModelLibrary.scan(ServerSettings.load({"models_dir": models, "alias": "mine"}))
    assert aliased.default.id == "mine" and aliased.default.path == models / "a.gguf"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda d: d / "missing.gguf", "model not found"),
        (lambda d: _write(d / "junk.gguf", b"GGUF" + b"\x07" * 4000), "not a valid GGUF"),
        (
            lambda d: _write(d / "cut.gguf", bundled_model_path().read_bytes()[:30_000_000]),
            "truncated",
        ),
        # Cut inside the tensor table: gguf-py used to fail with "cannot reshape array".
        (
            lambda d: _write(d / "cut-early.gguf", bundled_model_path().read_bytes()[:2_000_000]),
            "truncated",
        ),
    ],
    ids=["missing", "corrupt", "truncated", "truncated-in-table"],
)
def test_unusable_model_stops_start_up_with_one_line(tmp_path, make, expected):
    path = make(tmp_path)
    result = serve("--model", str(path), "--port", "0", cwd=tmp_path)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("hearth: ") and str(path) in lines[0] and expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_flag_value_is_one_line_naming_the_flag(tmp_path):
    result = serve("--n-ctx", "lots", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "hearth: --n-ctx: Input should be a valid integer, unable to parse string as an integer"
    ]


def test_banner_says_where_it_listens_and_what_it_runs(server):
    log = server.log()
    assert f"listening on http://127.0.0.1:{server.port}" in log
    for word in ("model", "smollm2", "context  2048 tokens", "threads", "GPU layers  0"):
        assert word in log


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_port_in_use_fails_before_the_model_loads(tmp_path):
    """With the port taken, serve loaded the model first and failed only after 13 s."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve("--port", str(port), cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and lines[0].startswith("hearth: cannot listen on"), result.stderr
    assert str(port) in lines[0]


def test_unusable_prompt_file_is_named_never_quoted(tmp_path):
    """`--prompt /etc/shadow` printed a line of that file in its error."""
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret-salt$secret-hash:19000:0:99999:7:::\n")
    result = serve("--prompt", str(secret), "--port", "0", cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1
    assert len(lines) == 1 and str(secret) in lines[0], result.stderr
    assert "secret" not in lines[0].replace(str(secret), "")
