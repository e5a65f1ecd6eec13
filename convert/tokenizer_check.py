"""Every conversion proves its vocabulary: llama.cpp must tokenize like the folder's tokenizer.

A GGUF whose vocabulary splits text differently from the tokenizer the model was trained with
loads and generates, and is quietly worse at everything (the transformers-5 LLaMA folders once
became GPT-2 BPE this way, with exit status 0). So the written file's vocabulary is loaded in
llama.cpp (vocab_only, no weights) and sample texts are compared, id for id, with the folder's
own tokenizer: `tokenizer.json` through the tokenizers library, `tokenizer.model` through
SentencePiece. The first text that differs fails the conversion before the output is renamed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hearth.convert.errors import ConversionError

SPECIAL = object()  # stands for the model's end-of-sequence token inside a sample

SAMPLES: list[tuple[object, ...]] = [
    ("Hello world",),
    ("The capital of France is Paris.",),
    (" leading space",),
    ("   three leading spaces",),
    ("accents: café, naïve, Übermaß, señor",),
    ("CJK: 日本語のテキスト, 中文, 한국어",),
    ("emoji: 🙂🦙 👍🏽",),
    ("def add(a, b):\n    return a + b  # sum\n\tx = [1, 2, 3]",),
    ("numbers 12345 and 3.14159",),
    ("Paris", SPECIAL, " is the end"),
]

Encoder = Callable[[str], list[int]]


@dataclass(frozen=True)
class ReferenceTokenizer:
    """The folder's own tokenizer: how it encodes plain text, and its end-of-sequence token."""

    encode: Encoder
    special: tuple[str, int] | None  # the end-of-sequence token's text and id, when known

    def tokens(self, sample: tuple[object, ...]) -> list[int]:
        ids: list[int] = []
        for part in sample:
            ids += [self.special[1]] if part is SPECIAL else self.encode(str(part))
        return ids

    def text(self, sample: tuple[object, ...]) -> str:
        return "".join(self.special[0] if part is SPECIAL else str(part) for part in sample)

    def samples(self) -> list[tuple[object, ...]]:
        return [s for s in SAMPLES if self.special is not None or SPECIAL not in s]


def _from_tokenizer_json(folder: Path, eos: tuple[str, int] | None) -> ReferenceTokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False).ids

    # tokenizers itself finds special tokens in text, as llama.cpp does: encode the whole string.
    return ReferenceTokenizer(encode, eos)


def _from_sentencepiece(folder: Path, eos: tuple[str, int] | None) -> ReferenceTokenizer:
    from sentencepiece import SentencePieceProcessor

    processor = SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    return ReferenceTokenizer(lambda text: list(processor.encode(text)), eos)


def reference_tokenizer(folder: Path, eos: tuple[str, int] | None) -> ReferenceTokenizer:
    """tokenizer.model when there is one (it is what tokenizer.json was converted from)."""
    if (folder / "tokenizer.model").is_file():
        return _from_sentencepiece(folder, eos)
    return _from_tokenizer_json(folder, eos)


def _gguf_encoder(path: Path) -> tuple[Callable[[str], list[int]], Callable[[], None]]:
    from llama_cpp import Llama

    llm = Llama(str(path), vocab_only=True, verbose=False)
    return (lambda text: llm.tokenize(text.encode("utf-8"), add_bos=False, special=True),
            llm.close)


def check_tokenizer(gguf_path: Path, folder: Path, eos: tuple[str, int] | None) -> None:
    """Raise ConversionError naming the first sample the GGUF's vocabulary tokenizes differently."""
    reference = reference_tokenizer(folder, eos)
    encode, close = _gguf_encoder(gguf_path)
    try:
        for sample in reference.samples():
            text = reference.text(sample)
            want, got = reference.tokens(sample), encode(text)
            if got != want:
                raise ConversionError(
                    f"the GGUF's vocabulary tokenizes {text!r} as {got[:12]}, the checkpoint's "
                    f"tokenizer as {want[:12]}; refusing to write a model that reads text "
                    "differently from the original"
                )
    finally:
        close()
