"""PEFT LoRA adapters -> GGUF adapters, against llama.cpp's convert_lora_to_gguf.py.

Every tensor and every metadata key must match except those in DIFFERING_ON_PURPOSE
(convert/README.md says why).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gguf
import pytest
from checkpoint_builders import build_lora_adapter
from model_runs import tensor_bytes

from hearth.convert.errors import ConversionError
from hearth.convert.lora import convert_adapter, lora_alpha
from hearth.convert.quantize import OUT_TYPES

# general.name: the folder's name as spelled (the reference title-cases it), as for models;
# general.base_model.* and general.tags: what the reference guesses from the adapter's
# README.md model card (a local base path becomes "https://huggingface.co//tmp/..."); Hearth
# writes no model-card metadata.
DIFFERING_ON_PURPOSE = ("general.name", "general.base_model.", "general.tags")


def _metadata(path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(path)
    return {
        name: (field.types, field.contents())
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.") and not name.startswith(DIFFERING_ON_PURPOSE)
    }


@pytest.fixture(scope="module")
def adapters(tiny_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("lora")
    made: dict[tuple[str, bool], Path] = {}

    def get(arch: str, bin_format: bool = False) -> Path:
        if (arch, bin_format) not in made:
            folder = root / f"{arch}-{'bin' if bin_format else 'st'}"
            made[arch, bin_format] = build_lora_adapter(
                tiny_models[arch], folder, bin_format=bin_format
            )
        return made[arch, bin_format]

    return get


def _reference(script: Path, adapter: Path, base: Path, out: Path, out_type: str) -> None:
    lora_script = script.parent / "convert_lora_to_gguf.py"
    subprocess.run(
        [
            sys.executable,
            str(lora_script),
            str(adapter),
            "--base",
            str(base),
            "--outfile",
            str(out),
            "--outtype",
            out_type,
        ],
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize(
    ("arch", "out_type", "bin_format"),
    [
        ("llama", "f32", False),
        ("llama", "f16", False),
        ("llama", "f16", True),
        ("mistral", "f16", False),
        ("qwen2", "f16", False),
    ],
)
def test_adapter_is_identical_to_the_reference(
    adapters,
    tiny_models,
    llama_cpp_reference: Path,
    tmp_path: Path,
    arch: str,
    out_type: str,
    bin_format: bool,
) -> None:
    adapter = adapters(arch, bin_format)
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "reference.gguf"
    converted = convert_adapter(adapter, ours, OUT_TYPES[out_type], progress=False)
    _reference(llama_cpp_reference, adapter, tiny_models[arch], theirs, out_type)
    mine = tensor_bytes(ours)
    assert mine == tensor_bytes(theirs)
    assert _metadata(ours) == _metadata(theirs)
    assert any(name.endswith(".lora_b") and "attn_q" in name for name in mine)
    metadata = _metadata(ours)
    assert metadata["general.type"][1] == "adapter" and metadata["adapter.type"][1] == "lora"
    assert converted.alpha == 16.0


def test_base_comes_from_the_adapter_config(adapters, tmp_path: Path) -> None:
    adapter = adapters("llama")
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"]
    converted = convert_adapter(adapter, tmp_path / "a.gguf", OUT_TYPES["f16"], progress=False)
    assert converted.architecture == "llama"


def _broken_copy(adapter: Path, dest: Path, **changes: object) -> Path:
    dest.mkdir()
    for path in adapter.iterdir():
        (dest / path.name).write_bytes(path.read_bytes())
    config = json.loads((dest / "adapter_config.json").read_text())
    config.update(changes)
    (dest / "adapter_config.json").write_text(json.dumps(config))
    return dest


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"peft_type": "IA3"}, "not LoRA"),
        ({"alpha_pattern": {"q_proj": 4}}, "alpha_pattern"),
        ({"base_model_name_or_path": None}, "--base"),
        ({"base_model_name_or_path": "/no/such/folder"}, "--base"),
    ],
)
def test_adapters_llama_cpp_cannot_apply_are_refused_in_one_line(
    adapters,
    tmp_path: Path,
    changes: dict,
    phrase: str,
) -> None:
    folder = _broken_copy(adapters("llama"), tmp_path / "broken", **changes)
    output = tmp_path / "out.gguf"
    with pytest.raises(ConversionError, match=phrase):
        convert_adapter(folder, output, OUT_TYPES["f16"], progress=False)
    assert not output.exists()


def test_full_weights_in_an_adapter_are_refused(adapters, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = _broken_copy(adapters("llama"), tmp_path / "saved-modules")
    tensors = load_file(folder / "adapter_model.safetensors")
    tensors["base_model.model.lm_head.modules_to_save.default.weight"] = next(
        iter(tensors.values())
    )
    save_file(tensors, folder / "adapter_model.safetensors")
    with pytest.raises(ConversionError, match="not a LoRA pair"):
        convert_adapter(folder, tmp_path / "out.gguf", OUT_TYPES["f16"], progress=False)


def test_quantized_out_types_are_refused_for_adapters(adapters, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match="f32, f16, bf16"):
        convert_adapter(adapters("llama"), tmp_path / "a.gguf", OUT_TYPES["q4_k_m"])


def test_rslora_alpha_is_rescaled_for_llama_cpps_alpha_over_rank() -> None:
    # rsLoRA scales by alpha / sqrt(r) = 16 / 2; llama.cpp by alpha' / r, so alpha' = 32.
    assert lora_alpha({"lora_alpha": 16, "r": 4, "use_rslora": True}, Path("x")) == 32.0
    assert lora_alpha({"lora_alpha": 16, "r": 4}, Path("x")) == 16.0
