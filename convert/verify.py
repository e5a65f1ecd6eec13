"""What a conversion cost: the converted GGUF against the original, on a fixed text.

Both models score the same token sequence (tokenized by the GGUF, so the comparison is of the
weights and not of two tokenizers). The reference is the original checkpoint run in transformers
when it can be (a Hugging Face folder with transformers installed); otherwise an F32 conversion of
the original run in llama.cpp, which isolates what quantization cost.

Reported per converted file: top-1 agreement (how often both pick the same next token), mean
KL divergence of the converted distribution from the reference one, and both perplexities.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hearth.convert.errors import ConversionError

logger = logging.getLogger(__name__)

VERIFY_TEXT = """\
The river town woke slowly. Bakers pulled the first loaves from their ovens while the ferry
crossed the grey water, carrying milk, letters and a few sleepy workers to the other bank.
By nine o'clock the market square was full: farmers sold apples, cheese and honey, children
chased pigeons between the stalls, and an old man played the accordion beside the fountain.
Nobody in the town remembered when the bridge had been washed away, but everyone agreed that
the ferry was better. It was slower, they said, and that gave people time to talk. In winter
the river froze at the edges, and the ferryman broke the ice with a long wooden pole. Questions
were answered plainly there: the capital of France is Paris, water boils at one hundred degrees
Celsius at sea level, and two plus two is four. The library opened at ten and closed at six,
except on Sundays, when it did not open at all.
"""


@dataclass(frozen=True)
class Verification:
    """The cost of one conversion, measured against the reference on `tokens` positions."""

    converted: Path
    file_type: str
    reference: str
    tokens: int
    top1_agreement: float
    mean_kl: float
    perplexity: float
    reference_perplexity: float


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def compare_logits(
    reference: np.ndarray, converted: np.ndarray, tokens: Sequence[int]
) -> tuple[float, float, float, float]:
    """(top-1 agreement, mean KL(ref || converted), perplexity, reference perplexity).

    Row i holds the logits after tokens[:i+1], i.e. the prediction of tokens[i+1].
    """
    width = min(reference.shape[1], converted.shape[1])
    count = len(tokens) - 1
    ref = _log_softmax(reference[:count, :width])
    conv = _log_softmax(converted[:count, :width])
    agreement = float((ref.argmax(axis=1) == conv.argmax(axis=1)).mean())
    kl = float((np.exp(ref) * (ref - conv)).sum(axis=1).mean())
    targets = np.asarray(tokens[1 : count + 1])
    rows = np.arange(count)
    perplexity = float(np.exp(-conv[rows, targets].mean()))
    reference_perplexity = float(np.exp(-ref[rows, targets].mean()))
    return agreement, kl, perplexity, reference_perplexity


def gguf_tokens(path: Path, text: str) -> list[int]:
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=64, vocab_only=True, verbose=False)
    try:
        return llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
    finally:
        llm.close()


def gguf_logits(path: Path, tokens: Sequence[int], threads: int | None) -> np.ndarray:
    """Per-position logits of a GGUF in llama.cpp (logits_all keeps every position)."""
    from llama_cpp import Llama

    from hearth.engine.cpu import keep_amx_off_by_default

    keep_amx_off_by_default()  # the AMX kernels crash on some CPUs; see engine/cpu.py

    llm = Llama(
        str(path),
        n_ctx=len(tokens) + 16,
        n_batch=512,
        logits_all=True,
        n_threads=threads,
        verbose=False,
    )
    try:
        llm.eval(list(tokens))
        return np.array(llm.scores[: len(tokens)], dtype=np.float32)
    finally:
        llm.close()


def gguf_file_type(path: Path) -> str:
    import gguf

    reader = gguf.GGUFReader(path)
    field = reader.fields.get(gguf.Keys.General.FILE_TYPE)
    if field is None:
        return "?"
    return (
        gguf.LlamaFileType(int(field.contents())).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    )


def transformers_logits(folder: Path, tokens: Sequence[int]) -> np.ndarray | None:
    """The original checkpoint's logits in transformers, or None where it cannot run there."""
    try:
        import torch
        from transformers import AutoModelForCausalLM
    except ImportError:
        return None
    if not (folder / "config.json").is_file():
        return None  # a Meta .pth folder: transformers cannot load it directly
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        logits = model(torch.tensor([list(tokens)])).logits[0]
    return logits.float().numpy()


def _f32_reference_logits(original: Path, tokens: Sequence[int], threads: int | None) -> np.ndarray:
    from hearth.convert.converter import convert_checkpoint
    from hearth.convert.quantize import OUT_TYPES

    with tempfile.TemporaryDirectory(prefix="hearth-verify-") as scratch:
        reference = Path(scratch) / "reference-F32.gguf"
        convert_checkpoint(original, reference, OUT_TYPES["f32"], progress=False)
        return gguf_logits(reference, tokens, threads)


def verify_conversions(
    original: Path, converted: Sequence[Path], text: str = VERIFY_TEXT, threads: int | None = None
) -> list[Verification]:
    """Measure each converted GGUF against the original checkpoint on `text`."""
    for path in converted:
        if not path.is_file():
            raise ConversionError(f"{path} does not exist")
    tokens = gguf_tokens(converted[0], text)
    if len(tokens) < 2:
        raise ConversionError("the verification text is too short to score")
    reference_logits = transformers_logits(original, tokens)
    reference = "transformers (float32)"
    if reference_logits is None:
        logger.info("transformers cannot run %s; using an F32 conversion as reference", original)
        reference_logits = _f32_reference_logits(original, tokens, threads)
        reference = "llama.cpp F32 conversion"
    results = []
    for path in converted:
        logits = gguf_logits(path, tokens, threads)
        agreement, kl, ppl, ref_ppl = compare_logits(reference_logits, logits, tokens)
        results.append(
            Verification(
                path, gguf_file_type(path), reference, len(tokens) - 1, agreement, kl, ppl, ref_ppl
            )
        )
    return results
