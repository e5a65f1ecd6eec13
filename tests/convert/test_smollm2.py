"""The real SmolLM2-135M-Instruct as a Hugging Face checkpoint, converted end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from model_runs import gguf_prompt, llama_cpp_greedy, tensor_bytes, transformers_greedy

from hearth.cli import main
from hearth.convert.verify import verify_conversions
from tests.conftest import start_server

pytestmark = pytest.mark.slow

PROMPTS = (
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):",
)
EOS = 2  # <|im_end|>


def test_f16_greedy_output_equals_transformers(
    smollm2_hf: Path, smollm2_gguf: Callable[[str], Path]
) -> None:
    f16 = smollm2_gguf("f16")
    prompts = [gguf_prompt(f16, text) for text in PROMPTS]
    converted = llama_cpp_greedy(f16, prompts, 16)
    assert all(len(reply) >= 4 for reply in converted)
    assert converted == transformers_greedy(smollm2_hf, prompts, 16, EOS)


@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_tensor_data_is_byte_identical_to_llama_cpp_converter(
    smollm2_hf: Path,
    smollm2_gguf: Callable[[str], Path],
    llama_cpp_reference: Path,
    tmp_path: Path,
    out_type: str,
) -> None:
    reference = tmp_path / f"reference-{out_type}.gguf"
    subprocess.run(
        [
            sys.executable,
            str(llama_cpp_reference),
            str(smollm2_hf),
            "--outfile",
            str(reference),
            "--outtype",
            out_type,
        ],
        check=True,
        capture_output=True,
    )
    ours, theirs = tensor_bytes(smollm2_gguf(out_type)), tensor_bytes(reference)
    assert sorted(ours) == sorted(theirs)
    differing = [name for name in ours if ours[name] != theirs[name]]
    assert differing == []


def test_pytorch_bin_converts_to_the_same_tensors(
    smollm2_bin: Path, smollm2_gguf: Callable[[str], Path], tmp_path: Path
) -> None:
    """torch.save keeps the tied lm_head; it must not become a second output tensor."""
    out = tmp_path / "from-bin.gguf"
    assert main(["convert", str(smollm2_bin), "-o", str(out), "--outtype", "f16"]) == 0
    assert tensor_bytes(out) == tensor_bytes(smollm2_gguf("f16"))


def _chat(gguf_path: Path, question: str) -> str:
    from llama_cpp import Llama

    llm = Llama(str(gguf_path), n_ctx=512, n_threads=2, verbose=False)
    try:
        reply = llm.create_chat_completion(
            [{"role": "user", "content": question}], max_tokens=24, temperature=0.0
        )
    finally:
        llm.close()
    return reply["choices"][0]["message"]["content"]


def test_default_conversion_is_q4_k_m_named_after_the_model_and_answers(
    smollm2_hf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(smollm2_hf)]) == 0
    out = tmp_path / f"{smollm2_hf.name}-Q4_K_M.gguf"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]
    # A 135M model at 4-5 bits drifts on facts (verify shows the cost); it must still talk.
    answer = _chat(out, "What is the capital of France?")
    assert len(answer.split()) >= 5


def test_verify_reports_the_cost_of_each_type(
    smollm2_hf: Path, smollm2_gguf: Callable[[str], Path]
) -> None:
    f16, q8, q4 = verify_conversions(
        smollm2_hf, [smollm2_gguf("f16"), smollm2_gguf("q8_0"), smollm2_gguf("q4_k_m")], threads=2
    )
    assert f16.reference.startswith("transformers")
    assert f16.top1_agreement > 0.98 and f16.mean_kl < 1e-3
    assert q8.top1_agreement > 0.9 and q8.mean_kl < 0.02
    assert q4.mean_kl > q8.mean_kl > f16.mean_kl  # fewer bits cost more
    assert f16.perplexity == pytest.approx(f16.reference_perplexity, rel=0.01)


def test_safetensors_conversion_does_not_import_torch_and_streams(
    smollm2_hf: Path, tmp_path: Path
) -> None:
    """Peak memory stays well under the 538 MB checkpoint: tensors stream one at a time."""
    # VmHWM, not ru_maxrss: a forked child's ru_maxrss starts at the (large) pytest parent's.
    script = (
        "import re, sys\n"
        "from pathlib import Path\n"
        "from hearth.convert.converter import convert_checkpoint\n"
        "from hearth.convert.quantize import OUT_TYPES\n"
        f"convert_checkpoint(Path({str(smollm2_hf)!r}), Path({str(tmp_path / 'x.gguf')!r}),"
        " OUT_TYPES['f16'], progress=False)\n"
        "status = Path('/proc/self/status').read_text()\n"
        "print('torch' in sys.modules, re.search(r'VmHWM:\\s+(\\d+)', status)[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    torch_imported, peak_kib = done.stdout.split()
    assert torch_imported == "False"
    checkpoint_mib = (smollm2_hf / "model.safetensors").stat().st_size / 2**20
    assert int(peak_kib) / 1024 < checkpoint_mib * 0.6


def test_hearth_serve_serves_a_converted_model(
    smollm2_gguf: Callable[[str], Path], tmp_path: Path
) -> None:
    import httpx

    server = start_server(tmp_path, "--model", str(smollm2_gguf("q8_0")))
    try:
        request = {
            "model": "smollm2-q8_0",
            "max_tokens": 16,
            "temperature": 0,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
        }
        reply = httpx.post(f"{server.api}/chat/completions", json=request, timeout=120)
        assert reply.status_code == 200, server.log()
        choice = reply.json()["choices"][0]
        assert len(choice["message"]["content"].split()) >= 3 and choice["finish_reason"]
    finally:
        server.stop()
