"""The tokenizer, as GGUF metadata: tokens, scores, types, merges, special ids, chat template.

Two tokenizer models cover the supported families: SentencePiece (`tokenizer.model`: LLaMA 1/2,
Vicuna, Alpaca, TinyLlama, Mistral; or its tokenizer.json form with byte fallback, which is all
transformers 5 saves) written as GGUF model "llama", and byte-level BPE (`tokenizer.json`:
LLaMA 3, SmolLM, Qwen2) written as "gpt2". `TOKENIZER_READERS` picks the reader from the files;
gguf-py's `SpecialVocab` adds the merges, special token ids, add_bos/add_eos and the chat
template.

Hugging Face keeps added tokens in three places (tokenizer.json `added_tokens`,
tokenizer_config.json `added_tokens_decoder`, added_tokens.json); all are read, because a token
present in only one of them is still a row of the embedding. Rows left without any token (the
Vicuna "32001 rows, tokenizer.model has 32000" case) get placeholder tokens, with a warning,
so the vocabulary matches the embedding and llama.cpp loads the model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gguf

from hearth.convert.errors import ConversionError
from hearth.convert.sentencepiece_json import (
    METASPACE,
    adds_space_prefix,
    is_sentencepiece_json,
    sentencepiece_json_pieces,
)

logger = logging.getLogger(__name__)

ADDED_TOKEN_SCORE = -1000.0
# The token kinds gguf-py's SpecialVocab reads from the tokenizer files by default.
SPECIAL_TOKEN_TYPES = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")

# The regexes byte-level BPE tokenizers split text with, as their tokenizer.json spells them.
# Llama 3's is GPT-4's cl100k split, which OLMo 2's dolma2 tokenizer (and DBRX's) also use.
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The pre-tokenizers named here for which llama.cpp adds a BOS unless the file says not to.
BOS_BY_DEFAULT = frozenset({"llama-bpe"})
# Falcon's last step: numbers are cut into groups of three digits.
FALCON_DIGIT_GROUPS = "[0-9][0-9][0-9]"


@dataclass
class Vocabulary:
    """Tokens in id order, ready for the GGUF tokenizer keys."""

    model: str  # GGUF tokenizer model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
    pre: str | None
    tokens: list[str]
    scores: list[float]
    types: list[int]
    # None leaves llama.cpp's default (a "▁" before text for "llama", none for "gpt2").
    space_prefix: bool | None = None
    # Special token ids an architecture fixes whatever the tokenizer files say (Gemma's FIM ids).
    fixed_special_ids: dict[str, int] = field(default_factory=dict)

    def pad_to(self, rows: int) -> None:
        """Give every embedding row a token: placeholders for rows no tokenizer file names."""
        if rows < len(self.tokens):
            self._drop_surplus_added(rows)
        first = len(self.tokens)
        for token_id in range(first, rows):
            self.tokens.append(f"[PAD{token_id}]")
            self.scores.append(ADDED_TOKEN_SCORE)
            self.types.append(gguf.TokenType.UNUSED)
        if rows > first:
            logger.warning(
                "the model has %d embedding rows but its tokenizer files define %d tokens; "
                "added %d placeholder token(s) [PAD%d]..[PAD%d] (ids %d..%d, type UNUSED) so "
                "the vocabulary matches the embedding. The model will never produce them.",
                rows,
                first,
                rows - first,
                first,
                rows - 1,
                first,
                rows - 1,
            )

    def _drop_surplus_added(self, rows: int) -> None:
        """Added tokens past the embedding's last row have no weights: drop them, loudly.

        Vicuna-era folders list a pad token in added_tokens.json that was never given a row
        (32,001 tokens, 32,000 rows); llama.cpp refuses such a file, and the model cannot
        produce or read those ids anyway. Base pieces past the end mean the tokenizer belongs
        to another model, which stays an error.
        """
        surplus = range(rows, len(self.tokens))
        added_kinds = (gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED, gguf.TokenType.UNUSED)
        if any(self.types[i] not in added_kinds for i in surplus):
            raise ConversionError(
                f"the tokenizer has {len(self.tokens)} tokens but the embedding has only {rows} "
                "rows; the tokenizer files do not belong to this model"
            )
        dropped = ", ".join(f"{self.tokens[i]!r} (id {i})" for i in surplus)
        logger.warning(
            "the tokenizer defines %d token(s) more than the model's %d embedding rows; dropped "
            "the added token(s) %s, which have no weights",
            len(surplus),
            rows,
            dropped,
        )
        del self.tokens[rows:], self.scores[rows:], self.types[rows:]

    def eos(self, folder: Path) -> tuple[str, int] | None:
        """The end-of-sequence token's text and id, as the tokenizer files name it."""
        token_id = gguf.SpecialVocab(folder, load_merges=False).special_token_ids.get("eos")
        if token_id is None or not 0 <= token_id < len(self.tokens):
            return None
        return self.tokens[token_id], token_id

    def write(self, writer: gguf.GGUFWriter, folder: Path) -> None:
        writer.add_tokenizer_model(self.model)
        if self.pre is not None:
            writer.add_tokenizer_pre(self.pre)
        writer.add_token_list(self.tokens)
        if self.model == "llama":
            writer.add_token_scores(self.scores)
        writer.add_token_types(self.types)
        if self.space_prefix is not None:
            writer.add_add_space_prefix(self.space_prefix)
        special = gguf.SpecialVocab(
            folder,
            load_merges=self.model == "gpt2",
            n_vocab=len(self.tokens),
            special_token_types=[*SPECIAL_TOKEN_TYPES, *self.fixed_special_ids],
        )
        for kind, token_id in self.fixed_special_ids.items():
            special._set_special_token(kind, token_id)
        if self.pre in BOS_BY_DEFAULT and "bos" not in special.add_special_token:
            # Byte-level BPE tokenizers add BOS only when their files say so; for these
            # pre-tokenizers llama.cpp would otherwise add one, and every prompt would start
            # with a stray token. (For the others its default is already no BOS, and the key
            # is left out, as llama.cpp's converter leaves it.)
            special.add_special_token["bos"] = False
        if self.model == "gpt2" and _byte_level_post_processor(folder):
            # A ByteLevel post-processor adds nothing; llama.cpp's converter (its newer gguf-py)
            # then writes add_bos_token and add_eos_token false, and so does this one.
            special.add_special_token.setdefault("bos", False)
            special.add_special_token.setdefault("eos", False)
        special.add_to_gguf(writer, quiet=True)


def _byte_level_post_processor(folder: Path) -> bool:
    processor = _json_or_empty(folder / "tokenizer.json").get("post_processor") or {}
    steps = processor.get("processors", [processor])
    return any(step.get("type") == "ByteLevel" for step in steps)


@dataclass(frozen=True)
class AddedToken:
    content: str
    special: bool
    # Whether the token swallows the whitespace before / after it when text is split on it.
    lstrip: bool = False
    rstrip: bool = False


def _json_or_empty(path: Path) -> Any:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path} is not valid JSON ({e})") from e


def added_tokens(folder: Path) -> dict[int, AddedToken]:
    """Every added token from every file Hugging Face keeps them in, by id."""
    found: dict[int, AddedToken] = {}
    special_contents = {
        v["content"] if isinstance(v, dict) else v
        for v in _json_or_empty(folder / "special_tokens_map.json").values()
        if isinstance(v, (str, dict))
    }
    for content, token_id in _json_or_empty(folder / "added_tokens.json").items():
        found[int(token_id)] = AddedToken(content, content in special_contents)
    decoder = _json_or_empty(folder / "tokenizer_config.json").get("added_tokens_decoder", {})
    for token_id, entry in decoder.items():
        found[int(token_id)] = _added_token(entry)
    for entry in _json_or_empty(folder / "tokenizer.json").get("added_tokens", []):
        found[int(entry["id"])] = _added_token(entry)
    return found


def _added_token(entry: dict[str, Any]) -> AddedToken:
    return AddedToken(
        entry["content"],
        bool(entry.get("special")),
        bool(entry.get("lstrip")),
        bool(entry.get("rstrip")),
    )


def _sentencepiece_vocabulary(folder: Path) -> Vocabulary:
    try:
        from sentencepiece import SentencePieceProcessor
    except ImportError as e:
        raise ConversionError("tokenizer.model needs the sentencepiece package") from e
    processor = SentencePieceProcessor()
    if not processor.LoadFromFile(str(folder / "tokenizer.model")):
        raise ConversionError(f"{folder / 'tokenizer.model'} is not a SentencePiece model")
    tokens, scores, types = [], [], []
    for i in range(processor.vocab_size()):
        tokens.append(processor.IdToPiece(i))
        scores.append(processor.GetScore(i))
        types.append(_piece_type(processor, i))
    # "default", as llama.cpp's converter writes for every SentencePiece vocabulary.
    vocab = Vocabulary("llama", "default", tokens, scores, types)
    _merge_added(vocab, added_tokens(folder), over_sentencepiece_model=True)
    return vocab


def _piece_type(processor: Any, i: int) -> gguf.TokenType:
    if processor.IsUnknown(i):
        return gguf.TokenType.UNKNOWN
    if processor.IsControl(i):
        return gguf.TokenType.CONTROL
    if processor.IsUnused(i):
        return gguf.TokenType.UNUSED
    if processor.IsByte(i):
        return gguf.TokenType.BYTE
    return gguf.TokenType.NORMAL


# Added tokens that are control tokens whatever their files say: some tokenizers mark markers
# such as dolma2's <|extra_id_0|> or Gemma's <unused0> not special. llama.cpp's converter makes
# them CONTROL (rendered as nothing, never produced from plain text), and so does this one.
CONTROL_LOOKING = ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
CONTROL_BRACKETS = (("<|", "|>"), ("<\uff5c", "\uff5c>"), ("<unused", ">"))


def _looks_like_control(content: str) -> bool:
    return content in CONTROL_LOOKING or any(
        content.startswith(start) and content.endswith(end) for start, end in CONTROL_BRACKETS
    )


def _merge_added(
    vocab: Vocabulary, added: dict[int, AddedToken], *, over_sentencepiece_model: bool = False
) -> None:
    """Added tokens override base pieces with the same id and extend the list past its end.

    Over a tokenizer.model they are written as llama.cpp's converter writes them: a user-defined
    token's "▁" becomes a space (llama.cpp matches user-defined tokens in the raw text, so
    Gemma's whitespace runs "▁▁".. would never match), and a listed <unk> takes the added type.
    """
    keep = (
        (gguf.TokenType.BYTE,)
        if over_sentencepiece_model
        else (gguf.TokenType.UNKNOWN, gguf.TokenType.BYTE)
    )
    for token_id in sorted(added):
        token = added[token_id]
        control = token.special or _looks_like_control(token.content)
        kind = gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED
        content = token.content
        if over_sentencepiece_model and kind == gguf.TokenType.USER_DEFINED:
            content = content.replace(METASPACE, " ")
        if token_id < len(vocab.tokens):
            if vocab.types[token_id] in keep:
                continue  # byte pieces (and <unk>) keep their SentencePiece meaning
            vocab.tokens[token_id] = content
            vocab.types[token_id] = kind
            continue
        vocab.pad_to(token_id)  # a gap in the added ids: placeholders, with the warning
        vocab.tokens.append(content)
        vocab.scores.append(ADDED_TOKEN_SCORE)
        vocab.types.append(kind)


def bpe_pre_tokenizer(
    tokenizer: dict[str, Any], tokenizer_config: dict[str, Any] | None = None
) -> str:
    """The llama.cpp pre-tokenizer that splits text as this tokenizer.json does.

    Read from the tokenizer's own pre_tokenizer steps (llama.cpp's converter hashes how a sample
    text tokenizes and looks the hash up, which misses every retrained vocabulary). Where
    llama.cpp has two names for one split, the setting that tells them apart decides.
    """
    pre = tokenizer.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    regexes = [
        (step.get("pattern") or {}).get("Regex") for step in steps if step.get("type") == "Split"
    ]
    if LLAMA3_REGEX in regexes:
        # "llama-bpe" also makes llama.cpp take a word that is itself a token whole, as
        # Llama 3's ignore_merges does; "dbrx" is the same split with plain merges (dolma2).
        return "llama-bpe" if (tokenizer.get("model") or {}).get("ignore_merges") else "dbrx"
    if QWEN2_REGEX in regexes:
        return "qwen2"
    if kinds == ["Punctuation", "ByteLevel", "Digits", "Split"] and regexes == [
        FALCON_DIGIT_GROUPS
    ]:
        return "falcon"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        # StarCoder's split, which SmolLM kept. llama.cpp's two names for it differ only in
        # clean_up_tokenization_spaces when decoding: StarCoder's tokenizers set it, SmolLM's not.
        cleans = (tokenizer_config or {}).get("clean_up_tokenization_spaces", False)
        return "starcoder" if cleans else "smollm"
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    logger.warning(
        "unrecognised pre-tokenizer %s; using llama.cpp's default split, which may "
        "tokenize some text differently from the original",
        json.dumps(pre)[:200],
    )
    return "default"


def _bpe_vocabulary(folder: Path) -> Vocabulary:
    tokenizer = _json_or_empty(folder / "tokenizer.json")
    model = tokenizer.get("model", {})
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise ConversionError(f"{folder / 'tokenizer.json'}: only byte-level BPE is supported here")
    by_id = {token_id: text for text, token_id in model["vocab"].items()}
    size = max(by_id) + 1 if by_id else 0
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(size)]
    types = [gguf.TokenType.NORMAL if i in by_id else gguf.TokenType.UNUSED for i in range(size)]
    pre = bpe_pre_tokenizer(tokenizer, _json_or_empty(folder / "tokenizer_config.json"))
    vocab = Vocabulary("gpt2", pre, tokens, [0.0] * size, types)
    _merge_added(vocab, added_tokens(folder))
    return vocab


def _sentencepiece_json_vocabulary(folder: Path) -> Vocabulary:
    tokenizer = _json_or_empty(folder / "tokenizer.json")
    tokens, scores, types = sentencepiece_json_pieces(folder, tokenizer)
    # llama.cpp's converter names no pre-tokenizer for this model; "default" keeps its metadata.
    vocab = Vocabulary(
        "llama",
        "default",
        tokens,
        scores,
        types,
        space_prefix=None if adds_space_prefix(tokenizer) else False,
    )
    _merge_added(vocab, added_tokens(folder))
    return vocab


def _has_sentencepiece_json(folder: Path) -> bool:
    path = folder / "tokenizer.json"
    return path.is_file() and is_sentencepiece_json(_json_or_empty(path))


# First match wins: tokenizer.model is the original when both files are there.
TOKENIZER_READERS: list[tuple[Callable[[Path], bool], Callable[[Path], Vocabulary]]] = [
    (lambda folder: (folder / "tokenizer.model").is_file(), _sentencepiece_vocabulary),
    (_has_sentencepiece_json, _sentencepiece_json_vocabulary),
    (lambda folder: (folder / "tokenizer.json").is_file(), _bpe_vocabulary),
]


def load_vocabulary(folder: Path, rows: int) -> Vocabulary:
    """The vocabulary for a model whose embedding has `rows` rows."""
    reader = next((read for applies, read in TOKENIZER_READERS if applies(folder)), None)
    if reader is None:
        raise ConversionError(f"{folder} has no tokenizer (tokenizer.model or tokenizer.json)")
    vocab = reader(folder)
    vocab.pad_to(rows)
    return vocab
