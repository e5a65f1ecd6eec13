"""LoRA adapters in the model library: `--lora`, a config entry's `lora`, and models/."""

from __future__ import annotations

from pathlib import Path

import gguf
import pytest

from hearth.runtime.library import ModelLibrary
from hearth.runtime.settings import ServerSettings


def write_adapter(path: Path) -> Path:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    return path


def test_lora_flag_serves_base_plus_adapter_first_and_keeps_the_base(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "base.gguf").write_bytes(b"")
    adapter = write_adapter(tmp_path / "my-lora-F16.gguf")
    library = ModelLibrary.scan(
        ServerSettings.load(
            {"models_dir": models, "model": "base", "lora": adapter, "lora_scale": 0.5}
        )
    )
    first, second = library.specs[:2]
    assert (first.id, first.path, first.lora, first.lora_scale) == (
        "my-lora-F16",
        models / "base.gguf",
        adapter,
        0.5,
    )
    assert (second.id, second.lora) == ("base", None)
    # Only the adapter model gets the adapter in its engine options.
    assert first.settings.engine_options(first.path, first.id, first.lora).lora == adapter
    assert all(spec.lora is None for spec in library.specs[1:])


def test_config_entry_lora_is_found_in_models_dir(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "base.gguf").write_bytes(b"")
    write_adapter(models / "tuned-lora.gguf")
    config = tmp_path / "hearth.toml"
    config.write_text(
        '[[models]]\nid = "tuned"\npath = "base.gguf"\nlora = "tuned-lora.gguf"\nlora_scale = 0.8\n'
    )
    library = ModelLibrary.scan(ServerSettings.load({"models_dir": models}, config))
    tuned = library.get("tuned")
    assert tuned is not None
    assert (tuned.path, tuned.lora, tuned.lora_scale) == (
        models / "base.gguf",
        models / "tuned-lora.gguf",
        0.8,
    )
    # An adapter GGUF in models/ is no model by itself.
    assert library.get("tuned-lora") is None


def test_missing_lora_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="LoRA adapter not found"):
        ModelLibrary.scan(ServerSettings.load({"lora": tmp_path / "nope.gguf"}))
