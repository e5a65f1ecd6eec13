"""Tensors and metadata against llama.cpp's convert_hf_to_gguf.py, on tiny random checkpoints.

Every key must match except those listed in DIFFERING_ON_PURPOSE (convert/README.md says why).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from checkpoint_builders import TINY_CONFIGS
from model_runs import tensor_bytes

from hearth.convert.converter import convert_checkpoint
from hearth.convert.quantize import OUT_TYPES

# general.name: Hearth names the model after its folder as spelled, the reference title-cases it;
# general.size_label: the reference's parameter-count label ("135M"), which Hearth does not write.
DIFFERING_ON_PURPOSE = frozenset({"general.name", "general.size_label"})
# Layouts the reference cannot convert: StableLM 2 12B's per-head Q/K norms (its stacking
# generator returns before yielding, so it stops on "Unprocessed norms").
REFERENCE_STOPS = frozenset({"stablelm12b"})


def _metadata(path: Path) -> dict[str, object]:
    import gguf

    reader = gguf.GGUFReader(path)
    return {
        name: (field.types, field.contents())
        for name, field in reader.fields.items()
        if not name.startswith("GGUF.") and name not in DIFFERING_ON_PURPOSE
    }


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
@pytest.mark.parametrize("arch", [arch for arch in TINY_CONFIGS if arch not in REFERENCE_STOPS])
def test_tiny_model_is_identical_to_the_reference(
    tiny_models: dict[str, Path],
    llama_cpp_reference: Path,
    tmp_path: Path,
    arch: str,
    out_type: str,
) -> None:
    folder = tiny_models[arch]
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "reference.gguf"
    convert_checkpoint(folder, ours, OUT_TYPES[out_type], progress=False)
    subprocess.run(
        [
            sys.executable,
            str(llama_cpp_reference),
            str(folder),
            "--outfile",
            str(theirs),
            "--outtype",
            out_type,
        ],
        check=True,
        capture_output=True,
    )
    assert tensor_bytes(ours) == tensor_bytes(theirs)
    assert _metadata(ours) == _metadata(theirs)


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_stablelm_12b_is_the_reference_plus_stacked_head_norms(
    tiny_models: dict[str, Path], llama_cpp_reference: Path, tmp_path: Path, out_type: str
) -> None:
    """Everything the reference converts of a 12B-layout StableLM (the same folder without its
    per-head norms) is identical; attn_q_norm / attn_k_norm are the heads' norms stacked."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file, save_file

    folder = tiny_models["stablelm12b"]
    weights = load_file(folder / "model.safetensors")
    head_norms = {name for name in weights if "_layernorm.norms." in name}
    without = tmp_path / "without-head-norms"
    without.mkdir()
    for path in folder.iterdir():
        if path.suffix != ".safetensors":
            shutil.copy(path, without / path.name)
    save_file(
        {k: v for k, v in weights.items() if k not in head_norms},
        without / "model.safetensors",
        metadata={"format": "pt"},
    )
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "reference.gguf"
    convert_checkpoint(folder, ours, OUT_TYPES[out_type], progress=False)
    subprocess.run(
        [
            sys.executable,
            str(llama_cpp_reference),
            str(without),
            "--outfile",
            str(theirs),
            "--outtype",
            out_type,
        ],
        check=True,
        capture_output=True,
    )
    mine = tensor_bytes(ours)
    stacked = {
        name: mine.pop(name)
        for name in list(mine)
        if "attn_q_norm" in name or "attn_k_norm" in name
    }
    assert mine == tensor_bytes(theirs)
    assert _metadata(ours) == _metadata(theirs)
    config = json.loads((folder / "config.json").read_text())
    heads = {"q": config["num_attention_heads"], "k": config["num_key_value_heads"]}
    assert len(stacked) == 2 * config["num_hidden_layers"]
    for tensor in gguf.GGUFReader(ours).tensors:
        if tensor.name not in stacked:
            continue
        layer, which = int(tensor.name.split(".")[1]), tensor.name.split(".")[2][5]
        want = np.stack(
            [
                weights[f"model.layers.{layer}.self_attn.{which}_layernorm.norms.{h}.weight"]
                for h in range(heads[which])
            ]
        )
        assert int(tensor.tensor_type) == gguf.GGMLQuantizationType.F32
        assert np.array_equal(tensor.data.reshape(want.shape), want)
