"""Tensors and metadata against llama.cpp's convert_hf_to_gguf.py, on tiny random checkpoints.

Every key must match except those listed in DIFFERING_ON_PURPOSE (convert/README.md says why).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from checkpoint_builders import TINY_CONFIGS
from hearth.convert.converter import convert_checkpoint
from hearth.convert.quantize import OUT_TYPES
from model_runs import tensor_bytes

# general.name: Hearth names the model after its folder as spelled, the reference title-cases it;
# general.size_label: the reference's parameter-count label ("135M"), which Hearth does not write.
DIFFERING_ON_PURPOSE = frozenset({"general.name", "general.size_label"})


def _metadata(path: Path) -> dict[str, object]:
    import gguf

    reader = gguf.GGUFReader(path)
    return {name: (field.types, field.contents()) for name, field in reader.fields.items()
            if not name.startswith("GGUF.") and name not in DIFFERING_ON_PURPOSE}


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
@pytest.mark.parametrize("arch", list(TINY_CONFIGS))
def test_tiny_model_is_identical_to_the_reference(
    tiny_models: dict[str, Path], llama_cpp_reference: Path, tmp_path: Path, arch: str,
    out_type: str,
) -> None:
    folder = tiny_models[arch]
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "reference.gguf"
    convert_checkpoint(folder, ours, OUT_TYPES[out_type], progress=False)
    subprocess.run([sys.executable, str(llama_cpp_reference), str(folder), "--outfile",
                    str(theirs), "--outtype", out_type], check=True, capture_output=True)
    assert tensor_bytes(ours) == tensor_bytes(theirs)
    assert _metadata(ours) == _metadata(theirs)
