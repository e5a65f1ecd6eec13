"""Running models for the convert tests: greedy decoding both ways, and reading tensors."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def tensor_bytes(path: Path) -> dict[str, tuple[int, bytes]]:
    """Each tensor's GGML type and raw data bytes, by name."""
    import gguf

    reader = gguf.GGUFReader(path)
    return {t.name: (int(t.tensor_type), t.data.tobytes()) for t in reader.tensors}


def llama_cpp_greedy(gguf_path: Path, prompts: Sequence[Sequence[int]], n: int) -> list[list[int]]:
    """Greedy continuations (up to EOS or n tokens) of each token prompt in llama.cpp."""
    from llama_cpp import Llama

    llm = Llama(str(gguf_path), n_ctx=256, n_threads=2, verbose=False, seed=0)
    try:
        results = []
        for prompt in prompts:
            out: list[int] = []
            for token in llm.generate(
                list(prompt), top_k=1, temp=0.0, repeat_penalty=1.0, reset=True
            ):
                if token == llm.token_eos() or len(out) == n:
                    break
                out.append(token)
            results.append(out)
        return results
    finally:
        llm.close()


def transformers_greedy(
    folder: Path, prompts: Sequence[Sequence[int]], n: int, eos: int
) -> list[list[int]]:
    """The same in transformers, on the original checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    results = []
    for prompt in prompts:
        with torch.no_grad():
            output = model.generate(
                torch.tensor([list(prompt)]),
                max_new_tokens=n,
                do_sample=False,
                eos_token_id=eos,
                pad_token_id=eos,
            )
        generated = output[0, len(prompt) :].tolist()
        results.append(generated[: generated.index(eos)] if eos in generated else generated)
    return results


def gguf_prompt(gguf_path: Path, text: str) -> list[int]:
    from hearth.convert.verify import gguf_tokens

    return gguf_tokens(gguf_path, text)
