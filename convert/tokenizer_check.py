"""Every conversion proves its vocabulary: llama.cpp must tokenize like the folder's tokenizer.

A GGUF whose vocabulary splits text differently from the tokenizer the model was trained with
loads and generates, and is quietly worse at everything (the transformers-5 LLaMA folders once
became GPT-2 BPE this way, with exit status 0). So the written file's vocabulary is loaded in
llama.cpp (vocab_only, no weights) and sample texts are compared, id for id, with what
transformers' tokenizer makes of the folder. The first text that differs fails the conversion
before the output is renamed.

The reference is transformers' (fast) tokenizer, without importing transformers: `tokenizer.json`
through the tokenizers library when the folder has one (that file is what it loads), else
`tokenizer.model` through SentencePiece, split on the added tokens first, as transformers does
(`SentencePieceReference`). Each sample is encoded whole, the end-of-sequence token in it, so
the added tokens' lstrip/rstrip flags and tokenizer_config.json's `legacy` count: llama.cpp can
be told neither (it strips spaces after special tokens only in models it knows by name, Phi-3),
and a folder whose text after a special token reads differently must fail here.

llama.cpp runs in a child process: some vocabularies (a SentencePiece one without byte pieces)
make it abort, which would otherwise take `hearth convert` down with it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hearth.convert.errors import ConversionError
from hearth.convert.vocab import AddedToken, _json_or_empty, added_tokens

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
METASPACE = "\u2581"
# Appended to a serialized SentencePiece ModelProto: field 3 (normalizer_spec) once more, holding
# add_dummy_prefix (its field 3) = false. Protobuf merges a repeated message field, so the copy
# loaded from these bytes is the same model that never prepends "▁" by itself.
NO_DUMMY_PREFIX = b"\x1a\x02\x18\x00"
# Seconds llama.cpp may take to load a vocabulary (Gemma's 262,144 pieces take a few).
LLAMA_CPP_TIMEOUT = 300

# Said when the text around the end-of-sequence token differs: what llama.cpp cannot be told.
AFTER_SPECIAL = (
    " (llama.cpp drops the spaces after a special token only in a model named "
    "Phi-3, and knows nothing of tokenizer_config.json's legacy)"
)

Encoder = Callable[[str], list[int]]


@dataclass(frozen=True)
class ReferenceTokenizer:
    """The folder's own tokenizer: how it encodes text, and its end-of-sequence token."""

    encode: Encoder
    special: tuple[str, int] | None  # the end-of-sequence token's text and id, when known

    def text(self, sample: tuple[object, ...]) -> str:
        return "".join(self.special[0] if part is SPECIAL else str(part) for part in sample)

    def samples(self) -> list[tuple[object, ...]]:
        return [s for s in SAMPLES if self.special is not None or SPECIAL not in s]


def _from_tokenizer_json(folder: Path) -> Encoder:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids


class SentencePieceReference:
    """transformers' tokenizer for a folder with only tokenizer.model, rebuilt from its rules.

    transformers first splits text on the added tokens (longest first; a token with lstrip or
    rstrip also takes the whitespace before or after it), then encodes each piece of text in
    between. With `legacy` (true, or unset as transformers 4 reads it) every piece gets the
    SentencePiece "▁" prefix, as SentencePiece itself would; with `legacy: false` only text at
    the very start does, and not when it already starts with a space. (transformers 5 takes an
    unset `legacy` as false for LLaMA; that disagrees with the SentencePiece model the weights
    were trained with, and with llama.cpp, for every text starting with a space, so the
    transformers 4 reading is kept.)
    """

    def __init__(self, folder: Path, special: tuple[str, int] | None) -> None:
        from sentencepiece import SentencePieceNormalizer, SentencePieceProcessor

        proto = (folder / "tokenizer.model").read_bytes()
        self.processor = SentencePieceProcessor(model_proto=proto + NO_DUMMY_PREFIX)
        self.prefix = (
            SentencePieceNormalizer(model_proto=proto).Normalize("a").startswith(METASPACE)
        )
        config = _json_or_empty(folder / "tokenizer_config.json")
        self.legacy = config.get("legacy") is not False
        tokens = {
            token.content: (token_id, token)
            for token_id, token in added_tokens(folder).items()
            if token.content
        }
        if special is not None and special[0] not in tokens:
            tokens[special[0]] = (special[1], AddedToken(special[0], True))
        self.added = tokens
        by_length = sorted(tokens, key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, by_length))) if tokens else None

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        start = 0
        for match in self.pattern.finditer(text) if self.pattern else ():
            token_id, token = self.added[match.group()]
            before = text[start : match.start()]
            ids += self._encode_text(before.rstrip() if token.lstrip else before, start == 0)
            ids.append(token_id)
            start = match.end()
            if token.rstrip:
                start = len(text) - len(text[start:].lstrip())
        return ids + self._encode_text(text[start:], start == 0)

    def _encode_text(self, text: str, at_start: bool) -> list[int]:
        if not text:
            return []
        text = text.replace(" ", METASPACE)
        if self.prefix and (self.legacy or (at_start and not text.startswith(METASPACE))):
            text = METASPACE + text
        return list(self.processor.encode(text))


def reference_tokenizer(folder: Path, eos: tuple[str, int] | None) -> ReferenceTokenizer:
    """tokenizer.json when there is one (transformers loads it), else tokenizer.model."""
    if (folder / "tokenizer.json").is_file():
        return ReferenceTokenizer(_from_tokenizer_json(folder), eos)
    return ReferenceTokenizer(SentencePieceReference(folder, eos).encode, eos)


def llama_cpp_tokens(gguf_path: Path, texts: list[str]) -> list[list[int]]:
    """How llama.cpp tokenizes `texts` with the GGUF's vocabulary (special tokens parsed), read
    in a child process; a vocabulary that makes llama.cpp fail or abort is a ConversionError."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hearth.convert.tokenizer_check", str(gguf_path)],
            input=json.dumps(texts),
            capture_output=True,
            text=True,
            timeout=LLAMA_CPP_TIMEOUT,
            check=False,
            env={**os.environ, "GGML_NO_BACKTRACE": "1"},  # no gdb on an abort
        )
    except subprocess.TimeoutExpired as e:
        raise ConversionError(
            f"llama.cpp took over {LLAMA_CPP_TIMEOUT} s to load the written vocabulary"
        ) from e
    if done.returncode != 0:
        how = (
            f"crashed ({_signal_name(-done.returncode)})"
            if done.returncode < 0
            else f"failed (exit status {done.returncode})"
        )
        lines = [" ".join(line.split()) for line in done.stderr.splitlines() if line.strip()]
        raise ConversionError(
            f"llama.cpp {how} reading the written vocabulary"
            f"{': ' + lines[-1][-200:] if lines else ''}; the tokenizer files "
            "are incomplete or of a kind it cannot read"
        )
    return json.loads(done.stdout.splitlines()[-1])  # the child's last line; llama.cpp may talk


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def check_tokenizer(gguf_path: Path, folder: Path, eos: tuple[str, int] | None) -> None:
    """Raise ConversionError naming the first sample the GGUF's vocabulary tokenizes differently."""
    reference = reference_tokenizer(folder, eos)
    samples = reference.samples()
    texts = [reference.text(sample) for sample in samples]
    for sample, text, got in zip(samples, texts, llama_cpp_tokens(gguf_path, texts), strict=False):
        want = reference.encode(text)
        if got != want:
            raise ConversionError(
                f"the GGUF's vocabulary tokenizes {text!r} as {got[:12]}, the checkpoint's "
                f"tokenizer as {want[:12]}; refusing to write a model that reads text "
                f"differently from the original{AFTER_SPECIAL if SPECIAL in sample else ''}"
            )


def _tokenize_stdin(gguf_path: str) -> None:
    """The child process: texts as a JSON list on stdin, their ids as a JSON list on stdout."""
    from llama_cpp import Llama

    texts = json.loads(sys.stdin.read())
    llm = Llama(gguf_path, vocab_only=True, verbose=False)
    try:
        ids = [llm.tokenize(t.encode("utf-8"), add_bos=False, special=True) for t in texts]
    finally:
        llm.close()
    sys.stdout.write("\n" + json.dumps(ids) + "\n")


if __name__ == "__main__":
    _tokenize_stdin(sys.argv[1])
