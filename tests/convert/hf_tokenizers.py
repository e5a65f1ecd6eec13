"""Real Hugging Face tokenizers for test checkpoints, rebuilt from llama.cpp's vocab-only GGUFs.

llama.cpp's source ships `models/ggml-vocab-llama-spm.gguf` (LLaMA 2's SentencePiece vocabulary:
pieces, scores, types) with `.inp`/`.out` tokenizer test pairs. `llama2_tokenizer_json` turns it
into the folder transformers 5 saves for a LLaMA tokenizer: `tokenizer.json` (BPE with byte
fallback) and `tokenizer_config.json`, no `tokenizer.model`. `vocab_test_pairs` reads the pairs,
so a test can first prove the rebuilt tokenizer is the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

VOCAB_TEST_SEPARATOR = "\n__ggml_vocab_test__\n"


def _spm_merges(pieces: list[str], scores: list[float], normal: list[bool]) -> list[tuple[str, str]]:
    """BPE merges equivalent to SentencePiece's score order: every split of a piece into two
    pieces, best-scored result first (ties by the parts' ids, as SentencePiece breaks them)."""
    ids = {piece: i for i, piece in enumerate(pieces) if normal[i]}
    found = []
    for i, piece in enumerate(pieces):
        if not normal[i]:
            continue
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                found.append((-scores[i], ids[left], ids[right], left, right))
    found.sort()
    return [(left, right) for _, _, _, left, right in found]


def llama2_tokenizer_json(vocab_gguf: Path, dest: Path) -> Path:
    import gguf
    from transformers import LlamaTokenizer

    reader = gguf.GGUFReader(vocab_gguf)
    pieces = [str(p) for p in reader.fields["tokenizer.ggml.tokens"].contents()]
    scores = [float(s) for s in reader.fields["tokenizer.ggml.scores"].contents()]
    types = [int(t) for t in reader.fields["tokenizer.ggml.token_type"].contents()]
    normal = [t == gguf.TokenType.NORMAL for t in types]
    tokenizer = LlamaTokenizer(vocab={p: i for i, p in enumerate(pieces)},
                               merges=_spm_merges(pieces, scores, normal), legacy=True,
                               add_bos_token=True, add_eos_token=False)
    # transformers 5 gives every LLaMA tokenizer a Metaspace pre-tokenizer that adds no "▁" before
    # text already starting with a space. meta-llama's tokenizer.json (like SentencePiece, which
    # the model was trained with) always prepends one, with a normalizer; write that one, as the
    # file a user has after saving a Hub LLaMA folder.
    tokenizer.save_pretrained(dest)
    path = dest / "tokenizer.json"
    content = json.loads(path.read_text(encoding="utf-8"))
    content["pre_tokenizer"] = None
    content["normalizer"] = {"type": "Sequence", "normalizers": [
        {"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return dest


def vocab_test_pairs(vocab_gguf: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test texts and the ids the original tokenizer gives (no BOS)."""
    texts = vocab_gguf.with_name(vocab_gguf.name + ".inp").read_text(encoding="utf-8")
    ids = vocab_gguf.with_name(vocab_gguf.name + ".out").read_text(encoding="utf-8")
    inputs = texts.split(VOCAB_TEST_SEPARATOR)
    outputs = [[int(t) for t in line.split()] for line in ids.split("\n")]
    return list(zip(inputs, outputs))


def gpt2_tokenizer_folder(vocab_gguf: Path, dest: Path) -> Path:
    """GPT-2's real byte-level BPE tokenizer (50,257 tokens, 50,000 merges) as a Hugging Face
    folder: tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    reader = gguf.GGUFReader(vocab_gguf)
    tokens = [str(t) for t in reader.fields["tokenizer.ggml.tokens"].contents()]
    merges = [tuple(str(m).split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(dest / "tokenizer.json"))
    special = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>"}
    (dest / "special_tokens_map.json").write_text(json.dumps(special))
    (dest / "tokenizer_config.json").write_text(json.dumps(
        {**special, "tokenizer_class": "GPT2Tokenizer", "add_prefix_space": False,
         "model_max_length": 1024}))
    return dest
