"""Pure pieces of the converter: name mapping, Q/K permutation, storage types, vocab, metrics."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import gguf
import numpy as np
import pytest

from hearth.convert.architectures import (
    ARCHITECTURES,
    architecture_for,
    permute_for_llama_rope,
    rope_factor_tensors,
)
from hearth.convert.architectures.base import stacked_experts
from hearth.convert.architectures.falcon import regroup_qkv
from hearth.convert.checkpoint import Checkpoint, LazyTensor, bf16_to_f32
from hearth.convert.converter import storage_type
from hearth.convert.errors import ConversionError
from hearth.convert.verify import compare_logits
from hearth.convert.vocab import (
    LLAMA3_REGEX,
    QWEN2_REGEX,
    Vocabulary,
    added_tokens,
    bpe_pre_tokenizer,
)

Q = gguf.GGMLQuantizationType
CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 300,
    "num_hidden_layers": 2,
    "rms_norm_eps": 1e-5,
    "max_position_embeddings": 256,
}


def _checkpoint(**config_changes: object) -> Checkpoint:
    return Checkpoint(Path("/nowhere"), {**CONFIG, **config_changes}, {})


def _hf_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """What transformers' convert_llama_weights_to_hf.py does to Meta's Q/K rows."""
    rows, cols = weight.shape
    return weight.reshape(n_head, rows // n_head // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def test_permutation_undoes_hugging_face_rope_permutation() -> None:
    meta = np.arange(32 * 8, dtype=np.float32).reshape(32, 8)
    hf = _hf_permute(meta, n_head=4)
    assert not np.array_equal(hf, meta)
    assert np.array_equal(permute_for_llama_rope(4)(hf), meta)


def test_meta_checkpoint_is_not_permuted() -> None:
    arch = architecture_for(Checkpoint(Path("/x"), CONFIG, {}, hf_rope_layout=False))
    assert arch.transform(gguf.MODEL_TENSOR.ATTN_Q) is None
    hf_arch = architecture_for(_checkpoint())
    assert hf_arch.transform(gguf.MODEL_TENSOR.ATTN_Q) is not None


def test_qwen2_keeps_its_rows_in_order() -> None:
    arch = architecture_for(_checkpoint(architectures=["Qwen2ForCausalLM"]))
    assert arch.arch_name == "qwen2"
    assert arch.transform(gguf.MODEL_TENSOR.ATTN_Q) is None


def test_unknown_architecture_lists_the_supported_ones() -> None:
    with pytest.raises(ConversionError) as error:
        architecture_for(_checkpoint(architectures=["GPTNeoXForCausalLM"]))
    message = str(error.value)
    assert "GPTNeoXForCausalLM" in message
    for name in ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM"):
        assert name in message and name in ARCHITECTURES


def test_missing_config_key_is_named() -> None:
    config = {k: v for k, v in CONFIG.items() if k != "num_attention_heads"}
    with pytest.raises(ConversionError, match="num_attention_heads"):
        architecture_for(Checkpoint(Path("/x"), config, {}))


@pytest.mark.parametrize(
    ("name", "ndim", "expected"),
    [
        ("blk.0.attn_q.weight", 2, Q.F16),
        ("blk.0.attn_norm.weight", 1, Q.F32),
        ("output_norm.weight", 1, Q.F32),
        ("blk.0.attn_q.bias", 1, Q.F32),
        ("token_embd.weight", 2, Q.F16),
    ],
)
def test_norms_and_vectors_stay_f32(name: str, ndim: int, expected: Q) -> None:
    assert storage_type(name, ndim, Q.F16) == expected


@pytest.mark.parametrize("kind", [gguf.MODEL_TENSOR.FFN_GATE_INP, gguf.MODEL_TENSOR.POS_EMBD])
def test_routers_and_position_embeddings_stay_f32(kind: gguf.MODEL_TENSOR) -> None:
    assert storage_type("blk.0.x.weight", 2, Q.F16, kind) == Q.F32


def test_bf16_widens_exactly() -> None:
    values = np.array([1.0, -2.5, 3.140625, 0.0], dtype=np.float32)
    raw = (values.view(np.uint32) >> 16).astype(np.uint16)
    assert np.array_equal(bf16_to_f32(raw), values)


def _split(regex: str) -> dict:
    return {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False}


BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}
DIGITS_THEN_BYTE_LEVEL = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {**BYTE_LEVEL, "use_regex": True},
    ],
}


@pytest.mark.parametrize(
    ("tokenizer", "tokenizer_config", "expected"),
    [
        # Llama 3 takes whole-word tokens (ignore_merges); dolma2 (OLMo 2) spells its split with
        # behavior Removed / invert and merges as usual.
        (
            {
                "pre_tokenizer": {
                    "type": "Sequence",
                    "pretokenizers": [_split(LLAMA3_REGEX), BYTE_LEVEL],
                },
                "model": {"type": "BPE", "ignore_merges": True},
            },
            {},
            "llama-bpe",
        ),
        (
            {
                "pre_tokenizer": {
                    "type": "Sequence",
                    "pretokenizers": [
                        {**_split(LLAMA3_REGEX), "behavior": "Removed", "invert": True},
                        BYTE_LEVEL,
                    ],
                },
                "model": {"type": "BPE"},
            },
            {},
            "dbrx",
        ),
        (
            {
                "pre_tokenizer": {
                    "type": "Sequence",
                    "pretokenizers": [_split(QWEN2_REGEX), BYTE_LEVEL],
                }
            },
            {},
            "qwen2",
        ),
        (
            {
                "pre_tokenizer": {
                    "type": "Sequence",
                    "pretokenizers": [
                        {"type": "Punctuation", "behavior": "Contiguous"},
                        {**BYTE_LEVEL, "use_regex": True},
                        {"type": "Digits", "individual_digits": False},
                        _split("[0-9][0-9][0-9]"),
                    ],
                }
            },
            {},
            "falcon",
        ),
        (
            {"pre_tokenizer": DIGITS_THEN_BYTE_LEVEL},
            {"clean_up_tokenization_spaces": True},
            "starcoder",
        ),
        (
            {"pre_tokenizer": DIGITS_THEN_BYTE_LEVEL},
            {"clean_up_tokenization_spaces": False},
            "smollm",
        ),
        ({"pre_tokenizer": DIGITS_THEN_BYTE_LEVEL}, {}, "smollm"),
        ({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}, {}, "gpt-2"),
    ],
)
def test_pre_tokenizer_is_recognised(
    tokenizer: dict, tokenizer_config: dict, expected: str
) -> None:
    assert bpe_pre_tokenizer(tokenizer, tokenizer_config) == expected


def test_falcon_split_without_its_digit_groups_is_not_falcon() -> None:
    """Falcon's name must come from its whole split, not from the Punctuation step alone."""
    pre = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Punctuation", "behavior": "Contiguous"},
            {**BYTE_LEVEL, "use_regex": True},
        ],
    }
    assert bpe_pre_tokenizer({"pre_tokenizer": pre}) == "default"


def test_added_tokens_are_read_from_every_file(tmp_path: Path) -> None:
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<pad>": 32000}))
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"added_tokens_decoder": {"32001": {"content": "<|user|>", "special": True}}})
    )
    (tmp_path / "tokenizer.json").write_text(
        json.dumps({"added_tokens": [{"id": 32002, "content": "<tool>", "special": False}]})
    )
    found = added_tokens(tmp_path)
    assert {i: t.content for i, t in found.items()} == {
        32000: "<pad>",
        32001: "<|user|>",
        32002: "<tool>",
    }
    assert found[32001].special and not found[32002].special


def test_vicuna_vocab_mismatch_is_padded_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Vicuna: 32001 embedding rows, tokenizer.model with 32000 pieces and no added token."""
    vocab = Vocabulary("llama", None, ["a"] * 32000, [0.0] * 32000, [1] * 32000)
    with caplog.at_level(logging.WARNING):
        vocab.pad_to(32001)
    assert vocab.tokens[-1] == "[PAD32000]" and len(vocab.tokens) == 32001
    assert vocab.types[-1] == gguf.TokenType.UNUSED
    assert "32001 embedding rows" in caplog.text and "[PAD32000]" in caplog.text


def test_tokenizer_larger_than_embedding_is_refused() -> None:
    vocab = Vocabulary("llama", None, ["a"] * 10, [0.0] * 10, [1] * 10)
    with pytest.raises(ConversionError, match="only 8 rows"):
        vocab.pad_to(8)


def test_llama3_rope_factors_follow_the_wavelength_bands() -> None:
    arch = architecture_for(
        _checkpoint(
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
        )
    )
    ((name, factors),) = list(rope_factor_tensors(arch))
    assert name == "rope_freqs.weight" and factors.shape == (arch.head_dim // 2,)
    assert factors[0] == 1.0 and factors[-1] == 8.0  # high frequencies kept, low ones scaled
    assert np.all(np.diff(factors) >= 0)


def test_identical_logits_cost_nothing() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 20)).astype(np.float32)
    tokens = [1, 4, 2, 7, 3, 9]
    agreement, kl, ppl, ref_ppl = compare_logits(logits, logits, tokens)
    assert agreement == 1.0 and abs(kl) < 1e-12 and ppl == pytest.approx(ref_ppl)
    noisy = logits + rng.normal(scale=2.0, size=logits.shape).astype(np.float32)
    agreement, kl, _, _ = compare_logits(logits, noisy, tokens)
    assert kl > 0.1 and agreement < 1.0


def test_lazy_tensor_is_not_read_until_loaded() -> None:
    reads: list[int] = []
    tensor = LazyTensor((2, 2), "F32", lambda: reads.append(1) or np.zeros((2, 2), np.float32))
    assert reads == []
    tensor.load()
    assert reads == [1]


def test_experts_are_stacked_one_layer_and_projection_at_a_time() -> None:
    """Stacking reads nothing up front, and one stack reads only its own experts."""
    reads: list[str] = []

    def expert(name: str, value: float) -> LazyTensor:
        return LazyTensor(
            (2, 3), "F32", lambda: reads.append(name) or np.full((2, 3), value, np.float32)
        )

    names = [
        f"model.layers.{layer}.mlp.experts.{x}.{w}.weight"
        for layer in range(2)
        for x in range(4)
        for w in ("gate_proj", "down_proj")
    ]
    tensors = {name: expert(name, i) for i, name in enumerate(names)}
    tensors["model.layers.0.mlp.gate.weight"] = expert("router", -1)
    stacked = stacked_experts(tensors)
    assert reads == []
    assert sorted(stacked) == [
        "model.layers.0.mlp.experts.down_proj.weight",
        "model.layers.0.mlp.experts.gate_proj.weight",
        "model.layers.0.mlp.gate.weight",
        "model.layers.1.mlp.experts.down_proj.weight",
        "model.layers.1.mlp.experts.gate_proj.weight",
    ]
    gate = stacked["model.layers.1.mlp.experts.gate_proj.weight"]
    assert gate.shape == (4, 2, 3)
    data = gate.load()
    assert reads == [f"model.layers.1.mlp.experts.{x}.gate_proj.weight" for x in range(4)]
    assert [data[x, 0, 0] for x in range(4)] == [names.index(n) for n in reads]


def test_falcon_qkv_groups_become_queries_keys_values() -> None:
    # 4 query heads in 2 KV groups, head size 1: rows q0 q1 k0 v0 | q2 q3 k1 v1.
    rows = np.array(["q0", "q1", "k0", "v0", "q2", "q3", "k1", "v1"])[:, None]
    regrouped = regroup_qkv(n_head=4, n_head_kv=2, head_dim=1)(rows)
    assert regrouped[:, 0].tolist() == ["q0", "q1", "q2", "q3", "k0", "k1", "v0", "v1"]
