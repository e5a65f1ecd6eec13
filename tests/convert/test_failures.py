"""Every way a conversion can fail: one clear line, a non-zero exit, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from checkpoint_builders import build_tiny, meta_copy

from hearth.cli import main

Breaker = Callable[[Path], None]


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _missing_indexed_shard(folder: Path) -> None:
    min(folder.glob("model-*-of-*.safetensors")).unlink()


def _missing_unindexed_shard(folder: Path) -> None:
    (folder / "model.safetensors.index.json").unlink()
    max(folder.glob("model-*-of-*.safetensors")).unlink()


def _unmapped_tensor(folder: Path) -> None:
    from safetensors.numpy import load_file, save_file

    state = load_file(folder / "model.safetensors")
    state["model.layers.0.mystery_proj.weight"] = state["model.norm.weight"].copy()
    save_file(state, folder / "model.safetensors")


def _config_edit(**changes: object) -> Breaker:
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            if value is None:
                config.pop(key)
            else:
                config[key] = value
        (folder / "config.json").write_text(json.dumps(config))

    return edit


def _corrupt_header(folder: Path) -> None:
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", 10**12)
    path.write_bytes(bytes(data))


# (layout, how to break it, what the one line must mention)
CASES: dict[str, tuple[str, Breaker, str]] = {
    "missing indexed shard": ("sharded", _missing_indexed_shard, "missing"),
    "missing shard without index": ("sharded", _missing_unindexed_shard, "missing"),
    "truncated safetensors": ("single", lambda f: _truncate(f / "model.safetensors"), "truncated"),
    "corrupt safetensors header": ("single", _corrupt_header, "model.safetensors"),
    "truncated pth shard": (
        "meta",
        lambda f: _truncate(f / "consolidated.01.pth"),
        "consolidated.01.pth",
    ),
    "missing pth shard": (
        "meta",
        lambda f: (f / "consolidated.00.pth").unlink(),
        "consolidated.00.pth",
    ),
    "unmapped tensor": ("single", _unmapped_tensor, "mystery_proj"),
    "shape mismatch": ("single", _config_edit(intermediate_size=96), "shape"),
    "missing config key": ("single", _config_edit(num_attention_heads=None), "num_attention_heads"),
    "unknown architecture": (
        "single",
        _config_edit(architectures=["GPTNeoXForCausalLM"]),
        "Qwen2ForCausalLM",
    ),
    "no tokenizer": ("single", lambda f: (f / "tokenizer.model").unlink(), "tokenizer"),
}


@pytest.fixture(scope="module")
def layouts(
    sentencepiece_model: Path,
    spm_size: int,
    tiny_models: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    return {
        "single": tiny_models["llama"],
        "sharded": build_tiny(
            "llama", root / "sharded", sentencepiece_model, spm_size, max_shard_size="60KB"
        ),
        "meta": meta_copy(tiny_models["llama"], root / "meta"),
    }


@pytest.mark.parametrize("case", list(CASES))
def test_broken_checkpoint_fails_in_one_line_and_leaves_nothing(
    case: str, layouts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout, breaker, mention = CASES[case]
    source = shutil.copytree(layouts[layout], tmp_path / "model")
    breaker(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["convert", str(source), "-o", str(out_dir / "m.gguf"), "--outtype", "q8_0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hearth convert: error:")
    assert mention in err[0]
    assert list(out_dir.iterdir()) == []


def test_existing_output_is_kept_without_force(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.gguf"
    out.write_bytes(b"precious")
    args = ["convert", str(tiny_models["llama"]), "-o", str(out), "--outtype", "f16"]
    assert main(args) == 1
    assert "--force" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert main([*args, "--force"]) == 0
    assert out.read_bytes()[:4] == b"GGUF"
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_interrupted_quantization_leaves_nothing(
    tiny_models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during llama.cpp's quantization: neither the output nor the intermediate stays."""
    from hearth.convert import converter

    def interrupted(source: Path, dest: Path, *args: object) -> None:
        assert source.is_file()
        dest.write_bytes(b"GGUF half written")
        raise KeyboardInterrupt

    monkeypatch.setattr(converter, "quantize_gguf", interrupted)
    args = ["convert", str(tiny_models["llama"]), "-o", str(tmp_path / "m.gguf")]
    assert main(args) == 130
    assert list(tmp_path.iterdir()) == []


def test_killed_conversion_leaves_nothing(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    """SIGTERM in the middle of writing tensors also removes the partial file."""
    script = (
        "import os, signal, sys\n"
        "import hearth.convert.writer as writer\n"
        "original = writer.PlannedTensor.encoded\n"
        "def encoded(self):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return original(self)\n"
        "writer.PlannedTensor.encoded = encoded\n"
        "from hearth.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "convert",
            str(tiny_models["llama"]),
            "-o",
            str(tmp_path / "m.gguf"),
            "--outtype",
            "f16",
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        check=False,
    )
    assert done.returncode == 128 + 15
    assert list(tmp_path.iterdir()) == []


def _no_byte_pieces_tokenizer(dest: Path) -> Path:
    """A SentencePiece-style tokenizer.json (BPE with byte fallback) that lacks the 256 byte
    pieces <0x00>..<0xFF> byte fallback needs."""
    import string

    from tokenizers import AddedToken, Tokenizer, models, normalizers

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3}
    for char in string.ascii_letters + string.digits + string.punctuation:
        vocab[char] = len(vocab)
    merges = [("\u2581", "t"), ("h", "e"), ("\u2581t", "he")]
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in ("<unk>", "<s>", "</s>")]
    )
    dest.mkdir(parents=True)
    tokenizer.save(str(dest / "tokenizer.json"))
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "tokenizer_class": "LlamaTokenizer",
            }
        )
    )
    return dest


def test_tokenizer_without_byte_pieces_aborted_hearth_convert(tmp_path: Path) -> None:
    """llama.cpp aborted (std::out_of_range) inside the tokenizer check and took `hearth convert`
    down with it: exit 134, a gdb backtrace, and the .partial file left behind."""
    from checkpoint_builders import build_tiny_with_tokenizer_json
    from tokenizers import Tokenizer

    tokenizer = _no_byte_pieces_tokenizer(tmp_path / "tokenizer")
    size = Tokenizer.from_file(str(tokenizer / "tokenizer.json")).get_vocab_size()
    source = build_tiny_with_tokenizer_json(tmp_path / "model", tokenizer, size)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    hearth = Path(sys.executable).with_name("hearth")
    done = subprocess.run(
        [str(hearth), "convert", str(source), "-o", str(out_dir / "m.gguf"), "--outtype", "f16"],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    said = [
        line
        for line in done.stderr.splitlines()
        if line.strip() and not line.startswith(("INFO ", "WARNING "))
    ]
    assert done.returncode == 1, done.stderr[-2000:]
    assert len(said) == 1 and said[0].startswith("hearth convert: error: llama.cpp crashed")
    assert list(out_dir.iterdir()) == []
