"""Tiny random Llama, Mistral and Qwen2 models: every layout, and the Vicuna vocab mismatch."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from checkpoint_builders import TINY_CONFIGS, build_tiny, meta_copy, tiny_eos
from model_runs import gguf_prompt, llama_cpp_greedy, tensor_bytes, transformers_greedy

from hearth.cli import main
from hearth.convert.converter import convert_checkpoint
from hearth.convert.quantize import OUT_TYPES

PROMPTS = ("The capital of France is", "Once upon a time there was")


def _convert(source: Path, out: Path, out_type: str = "f32") -> Path:
    convert_checkpoint(source, out, OUT_TYPES[out_type], progress=False)
    return out


@pytest.mark.parametrize("arch", list(TINY_CONFIGS))
def test_f32_greedy_output_equals_transformers(
    tiny_models: dict[str, Path], spm_size: int, tmp_path: Path, arch: str
) -> None:
    # F32 here: a random model has near-ties that f16 rounding may legitimately flip (the F16
    # greedy comparison runs on the real SmolLM2, whose predictions are decisive).
    gguf_path = _convert(tiny_models[arch], tmp_path / f"{arch}.gguf", "f32")
    prompts = [gguf_prompt(gguf_path, text) for text in PROMPTS]
    converted = llama_cpp_greedy(gguf_path, prompts, 12)
    assert all(converted)
    eos = tiny_eos(arch, spm_size)[1]
    assert converted == transformers_greedy(tiny_models[arch], prompts, 12, eos)


def test_meta_consolidated_shards_convert_to_the_same_tensors(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Meta's .pth keep Q/K in llama.cpp's rope order: converting must not permute them."""
    meta = meta_copy(tiny_models["llama"], tmp_path / "meta", n_shards=2)
    assert sorted(p.name for p in meta.glob("*.pth")) == [
        "consolidated.00.pth",
        "consolidated.01.pth",
    ]
    from_meta = _convert(meta, tmp_path / "meta.gguf")
    from_hf = _convert(tiny_models["llama"], tmp_path / "hf.gguf")
    assert tensor_bytes(from_meta) == tensor_bytes(from_hf)


def test_meta_download_layout_finds_the_shared_tokenizer(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Meta's download: LLaMA/tokenizer.model beside LLaMA/7B/{params.json,consolidated.00.pth}."""
    meta = meta_copy(tiny_models["llama"], tmp_path / "LLaMA" / "7B", n_shards=1)
    (meta / "tokenizer.model").rename(tmp_path / "LLaMA" / "tokenizer.model")
    out = tmp_path / "7B.gguf"
    assert main(["convert", str(meta), "-o", str(out), "--outtype", "f16"]) == 0
    assert _vocab(out) == _vocab(_convert(tiny_models["llama"], tmp_path / "hf.gguf"))


def test_sharded_safetensors_convert_to_the_same_tensors(
    sentencepiece_model: Path, spm_size: int, tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    sharded = build_tiny(
        "mistral",
        tmp_path / "sharded",
        sentencepiece_model,
        spm_size,
        seed=1,
        max_shard_size="60KB",
    )
    assert (sharded / "model.safetensors.index.json").is_file()
    assert len(list(sharded.glob("model-*-of-*.safetensors"))) > 1
    assert tensor_bytes(_convert(sharded, tmp_path / "sharded.gguf")) == tensor_bytes(
        _convert(tiny_models["mistral"], tmp_path / "single.gguf")
    )


def _vicuna_like(source: Path, dest: Path, spm_size: int) -> Path:
    """A checkpoint with one embedding row more than tokenizer.model has pieces."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(source, dest)
    state = load_file(dest / "model.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        state[name] = torch.cat([state[name], state[name][:1] * 0.5])
    save_file(state, dest / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((dest / "config.json").read_text())
    config["vocab_size"] = spm_size + 1
    (dest / "config.json").write_text(json.dumps(config))
    return dest


def _vocab(gguf_path: Path) -> list[str]:
    import gguf

    reader = gguf.GGUFReader(gguf_path)
    return [str(t) for t in reader.fields["tokenizer.ggml.tokens"].contents()]


def test_vicuna_extra_row_is_padded_with_a_warning_and_runs(
    tiny_models: dict[str, Path],
    spm_size: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    vicuna = _vicuna_like(tiny_models["llama"], tmp_path / "vicuna", spm_size)
    with caplog.at_level(logging.WARNING):
        out = _convert(vicuna, tmp_path / "vicuna.gguf", "q8_0")
    assert f"[PAD{spm_size}]" in caplog.text and f"{spm_size + 1} embedding rows" in caplog.text
    assert _vocab(out)[-1] == f"[PAD{spm_size}]" and len(_vocab(out)) == spm_size + 1
    (reply,) = llama_cpp_greedy(out, [gguf_prompt(out, PROMPTS[0])], 8)
    assert reply


def test_vicuna_pad_token_from_added_tokens_json_is_used(
    tiny_models: dict[str, Path],
    spm_size: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The usual hand fix, an added_tokens.json naming the extra row, is honoured silently."""
    vicuna = _vicuna_like(tiny_models["llama"], tmp_path / "vicuna", spm_size)
    (vicuna / "added_tokens.json").write_text(json.dumps({"<pad>": spm_size}))
    with caplog.at_level(logging.WARNING):
        out = _convert(vicuna, tmp_path / "vicuna.gguf")
    assert "placeholder" not in caplog.text
    assert _vocab(out)[-1] == "<pad>"


def test_verify_cli_prints_a_row_per_conversion(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tiny_models["qwen2"]
    f32 = _convert(source, tmp_path / "q-f32.gguf", "f32")
    q4 = _convert(source, tmp_path / "q-q4_0.gguf", "q4_0")
    assert main(["verify", str(source), str(f32), str(q4), "--threads", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("reference: transformers")
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows["q-f32.gguf"][1] == "F32" and rows["q-q4_0.gguf"][1] == "Q4_0"
    assert float(rows["q-f32.gguf"][4].rstrip("%")) > 99.0
    assert float(rows["q-q4_0.gguf"][5]) > float(rows["q-f32.gguf"][5])


def test_convert_verify_flag_falls_back_to_an_f32_reference_for_meta_folders(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = meta_copy(tiny_models["llama"], tmp_path / "meta")
    out = tmp_path / "meta-q8.gguf"
    assert main(["convert", str(meta), "-o", str(out), "--outtype", "q8_0", "--verify"]) == 0
    printed = capsys.readouterr().out
    assert "reference: llama.cpp F32 conversion" in printed and "Q8_0" in printed


def test_f32_outtype_of_a_bfloat16_checkpoint_is_f32(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """GGML's F32 is type 0, so `float_type or lossless` once wrote bf16 tensors into an f32 GGUF.

    Also: bf16 sources widen exactly, bf16 output keeps their bits, q8_0 quantizes from them.
    """
    import gguf
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    source = shutil.copytree(tiny_models["llama"], tmp_path / "bf16")
    state = {k: v.to(torch.bfloat16) for k, v in load_file(source / "model.safetensors").items()}
    save_file(state, source / "model.safetensors", metadata={"format": "pt"})
    as_f32 = tensor_bytes(_convert(source, tmp_path / "f32.gguf", "f32"))
    assert {kind for kind, _ in as_f32.values()} == {gguf.GGMLQuantizationType.F32}
    as_bf16 = tensor_bytes(_convert(source, tmp_path / "bf16.gguf", "bf16"))
    for name, (kind, data) in as_bf16.items():
        if kind == gguf.GGMLQuantizationType.BF16:
            widened = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).tobytes()
            assert widened == as_f32[name][1], name
    assert any(kind == gguf.GGMLQuantizationType.BF16 for kind, _ in as_bf16.values())
    q8 = _convert(source, tmp_path / "q8.gguf", "q8_0")
    (reply,) = llama_cpp_greedy(q8, [gguf_prompt(q8, PROMPTS[0])], 8)
    assert reply


def test_vicuna_added_token_without_a_row_is_dropped_with_a_warning(
    tiny_models: dict[str, Path],
    spm_size: int,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Vicuna's added_tokens.json names a pad token the embedding has no row for (32,001 tokens
    for 32,000 rows); the converter refused, users dropped it by hand."""
    folder = shutil.copytree(tiny_models["llama"], tmp_path / "vicuna")
    (folder / "added_tokens.json").write_text(json.dumps({"<pad>": spm_size}))
    with caplog.at_level(logging.WARNING):
        out = _convert(folder, tmp_path / "vicuna.gguf", "q8_0")
    assert f"'<pad>' (id {spm_size})" in caplog.text
    assert len(_vocab(out)) == spm_size and "<pad>" not in _vocab(out)
    (reply,) = llama_cpp_greedy(out, [gguf_prompt(out, PROMPTS[0])], 8)
    assert reply


# The families added after the first six (whose verify runs are tested above and in test_smollm2).
@pytest.mark.parametrize("arch", list(TINY_CONFIGS)[6:])
def test_convert_verify_agrees_with_transformers_for_each_family(
    tiny_models: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], arch: str
) -> None:
    out = tmp_path / f"{arch}-f32.gguf"
    assert (
        main(
            [
                "convert",
                str(tiny_models[arch]),
                "-o",
                str(out),
                "--outtype",
                "f32",
                "--verify",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    row = next(line.split() for line in lines if line.startswith(out.name))
    assert "reference: transformers (float32)" in "\n".join(lines)
    # F32 both ways: the distributions agree (KL ~1e-5); a random model's near-ties over GPT-2's
    # 50,257 tokens may still flip a top-1 or two of the ~200 positions.
    assert float(row[4].rstrip("%")) >= 98.0 and float(row[5]) < 1e-3


def test_falcon_7b_multi_query_layout_generates_like_transformers(
    tiny_models: dict[str, Path], tmp_path: Path
) -> None:
    """Falcon 7B: one LayerNorm per block and one KV head, which its config.json implies by
    naming no num_kv_heads (llama.cpp's converter reads transformers' filled-in value instead
    and stops on the QKV reshape)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    source = tiny_models["falcon"]
    config = AutoConfig.from_pretrained(source)
    config.new_decoder_architecture, config.num_kv_heads = False, 1
    config.num_ln_in_parallel_attn = None  # the 40B layout set it to 2: ln_attn and ln_mlp
    torch.manual_seed(0)
    folder = tmp_path / "falcon-7b"
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    written = json.loads((folder / "config.json").read_text())
    del written["num_kv_heads"]
    (folder / "config.json").write_text(json.dumps(written))
    for path in source.glob("*token*"):
        shutil.copy(path, folder / path.name)
    gguf_path = _convert(folder, tmp_path / "falcon-7b.gguf", "f32")
    prompts = [gguf_prompt(gguf_path, text) for text in PROMPTS]
    assert llama_cpp_greedy(gguf_path, prompts, 12) == transformers_greedy(
        folder, prompts, 12, tiny_eos("falcon", 0)[1]
    )
