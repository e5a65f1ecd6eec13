"""`hearth convert OWNER/NAME` with the real huggingface-hub client against the loopback Hub.

The repositories hold a real tiny Llama checkpoint (tests/convert's builders) beside the
decoys a Hub repository really has: the weights again for other frameworks, GGUF and ONNX
exports, a model card. Only what the conversion reads may be fetched.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import gguf
import pytest
from conftest import Library, assert_one_line_failure

from hearth.convert.converter import convert_checkpoint
from hearth.convert.errors import ConversionError
from hearth.convert.hub import files_to_fetch
from hearth.convert.quantize import OUT_TYPES

# Appended, not put first: tests/convert has a conftest.py of its own.
sys.path.append(str(Path(__file__).parent.parent / "convert"))
from checkpoint_builders import bin_copy, build_lora_adapter, build_tiny, train_tokenizer
from model_runs import tensor_bytes

REPO = "test/tiny-llama"
SHARDED_REPO = "test/tiny-llama-sharded"
BIN_REPO = "test/tiny-llama-bin"
GGUF_ONLY_REPO = "test/only-gguf"
LORA_REPO = "test/tiny-lora"
# Files a Hub repository has that a conversion must not download.
DECOYS = (
    "flax_model.msgpack",
    "tf_model.h5",
    "model.onnx",
    "onnx/model.onnx",
    "tiny-llama-Q4_K_M.gguf",
    "consolidated.safetensors",
    "README.md",
    "original/params.json",
)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-checkpoints")
    spm = train_tokenizer(root / "spm")
    single = build_tiny("llama", root / "single", spm, 320)
    sharded = build_tiny("llama", root / "sharded", spm, 320, max_shard_size="60KB")
    decoy = root / "decoy.bin"
    decoy.write_bytes(os.urandom(50_000))
    lora = build_lora_adapter(single, root / "lora")
    config = json.loads((lora / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = REPO  # as a fine-tune on the Hub names its base
    (lora / "adapter_config.json").write_text(json.dumps(config))
    return {
        "single": single,
        "sharded": sharded,
        "bin": bin_copy(single, root / "bin"),
        "decoy": decoy,
        "lora": lora,
    }


def files_of(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in folder.iterdir() if p.is_file()}


@pytest.fixture
def repos(hub, checkpoints: dict[str, Path]):
    fake, _ = hub
    decoys = {name: checkpoints["decoy"] for name in DECOYS}
    # The .bin copy of the weights beside the safetensors, as most Hub repositories have it.
    fake.add(
        REPO,
        {
            **files_of(checkpoints["single"]),
            **decoys,
            "pytorch_model.bin": checkpoints["bin"] / "pytorch_model.bin",
        },
    )
    fake.add(SHARDED_REPO, {**files_of(checkpoints["sharded"]), **decoys})
    fake.add(BIN_REPO, {**files_of(checkpoints["bin"]), **decoys})
    fake.add(LORA_REPO, {**files_of(checkpoints["lora"]), "README.md": checkpoints["decoy"]})
    fake.add(
        GGUF_ONLY_REPO,
        {"README.md": checkpoints["decoy"], "model-Q4_K_M.gguf": checkpoints["decoy"]},
    )
    return fake


def fetched(fake) -> set[str]:
    return {name for name, _ in fake.ranges}


@pytest.mark.parametrize(
    ("repo", "layout"), [(REPO, "single"), (SHARDED_REPO, "sharded"), (BIN_REPO, "bin")]
)
def test_converting_a_repository_fetches_only_what_the_conversion_reads(
    library: Library,
    repos,
    checkpoints: dict[str, Path],
    tmp_path: Path,
    repo: str,
    layout: str,
) -> None:
    result = library.hearth("convert", repo, "--outtype", "f16")
    assert result.returncode == 0, result.stderr
    name = repo.split("/")[1]
    output = library.root / f"{name}-F16.gguf"  # named after the repository, not the snapshot
    expected = set(files_of(checkpoints[layout]))
    assert fetched(repos) == expected
    assert {"config.json", "tokenizer.model", "tokenizer_config.json"} <= expected
    # The same GGUF as converting the folder itself.
    local = tmp_path / "local.gguf"
    convert_checkpoint(checkpoints[layout], local, OUT_TYPES["f16"], progress=False, name=name)
    assert tensor_bytes(output) == tensor_bytes(local)
    field = gguf.GGUFReader(output).fields["general.name"]
    assert field.contents() == name
    # Downloaded into huggingface-hub's own cache.
    assert any((library.root / "hf").rglob("config.json"))


def test_an_adapter_repository_fetches_its_files_and_only_its_bases_config(
    library: Library,
    repos,
    checkpoints: dict[str, Path],
    tmp_path: Path,
) -> None:
    from hearth.convert.lora import convert_adapter

    result = library.hearth("convert", LORA_REPO)
    assert result.returncode == 0, result.stderr
    assert fetched(repos) == {"adapter_config.json", "adapter_model.safetensors", "config.json"}
    output = library.root / "tiny-lora-F16.gguf"
    local = tmp_path / "local.gguf"
    convert_adapter(
        checkpoints["lora"], local, OUT_TYPES["f16"], base=checkpoints["single"], progress=False
    )
    assert tensor_bytes(output) == tensor_bytes(local)
    assert gguf.GGUFReader(output).fields["general.type"].contents() == "adapter"


def test_pulling_an_adapter_repository_says_to_convert_it(library: Library, repos) -> None:
    result = library.hearth("pull", LORA_REPO)
    assert_one_line_failure(result, "LoRA adapter", f"hearth convert {LORA_REPO}")
    assert fetched(repos) == set()


def test_offline_mode_converts_from_the_cache(library: Library, repos) -> None:
    assert library.hearth("convert", REPO, "-o", "first.gguf", "--outtype", "f16").returncode == 0
    again = library.hearth(
        "convert", REPO, "-o", "second.gguf", "--outtype", "f16", HF_HUB_OFFLINE="1"
    )
    assert again.returncode == 0, again.stderr
    assert (library.root / "second.gguf").is_file()


def test_offline_mode_without_the_repository_in_the_cache_is_one_line(
    library: Library, repos
) -> None:
    result = library.hearth("convert", REPO, HF_HUB_OFFLINE="1")
    assert_one_line_failure(result, "offline mode", REPO)
    assert list(library.root.glob("*.gguf")) == []


def test_missing_repository_is_one_line(library: Library, repos) -> None:
    result = library.hearth("convert", "test/no-such-model")
    assert_one_line_failure(result, "repository not found", "test/no-such-model")


def test_no_network_is_one_line(library: Library, repos) -> None:
    result = library.hearth("convert", REPO, HF_ENDPOINT="http://127.0.0.1:9")
    assert_one_line_failure(result, "cannot reach", REPO)


def test_repository_without_convertible_weights_is_one_line(library: Library, repos) -> None:
    result = library.hearth("convert", GGUF_ONLY_REPO)
    assert_one_line_failure(result, "has no weights", "hearth pull")
    assert fetched(repos) == set()


def test_existing_output_is_refused_before_downloading(library: Library, repos) -> None:
    (library.root / "out.gguf").write_bytes(b"mine")
    result = library.hearth("convert", REPO, "-o", "out.gguf")
    assert_one_line_failure(result, "exists", "--force")
    assert fetched(repos) == set()
    assert (library.root / "out.gguf").read_bytes() == b"mine"


def test_interrupted_download_leaves_no_output_file(library: Library, repos) -> None:
    repos.stall.add("model.safetensors")
    status, output = library.interrupt_when_stalled(repos, "convert", REPO, "-o", "out.gguf")
    assert status != 0
    assert b"Traceback" not in output, output.decode(errors="replace")
    assert [p.name for p in library.root.iterdir() if "gguf" in p.name] == []


def test_a_folder_that_exists_is_converted_even_if_named_like_a_repository(
    library: Library,
    repos,
    checkpoints: dict[str, Path],
) -> None:
    folder = library.root / "test" / "tiny-llama"
    folder.mkdir(parents=True)
    for name, path in files_of(checkpoints["single"]).items():
        (folder / name).write_bytes(path.read_bytes())
    result = library.hearth("convert", "test/tiny-llama", "--outtype", "f16")
    assert result.returncode == 0, result.stderr
    assert fetched(repos) == set()
    assert (library.root / "tiny-llama-F16.gguf").is_file()


# ---- which files, as a pure function --------------------------------------------------------


def test_safetensors_are_preferred_and_subfolders_ignored() -> None:
    names = [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "consolidated.safetensors",
        "tokenizer.json",
        "chat_template.jinja",
        "original/consolidated.00.pth",
        "original/params.json",
        "README.md",
        "vocab.txt",
    ]
    assert files_to_fetch("o/m", names) == [
        "chat_template.jinja",
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
    ]


def test_meta_and_adapter_layouts_are_fetched_whole() -> None:
    assert files_to_fetch(
        "o/m",
        ["params.json", "consolidated.00.pth", "consolidated.01.pth", "tokenizer.model", "LICENSE"],
    ) == ["consolidated.00.pth", "consolidated.01.pth", "params.json", "tokenizer.model"]
    assert files_to_fetch(
        "o/lora", ["adapter_config.json", "adapter_model.safetensors", "README.md"]
    ) == ["adapter_config.json", "adapter_model.safetensors"]


def test_a_repository_of_onnx_and_flax_weights_only_is_refused() -> None:
    with pytest.raises(ConversionError, match="has no weights"):
        files_to_fetch("o/m", ["config.json", "flax_model.msgpack", "model.onnx"])
