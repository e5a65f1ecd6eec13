"""`hearth verify ORIGINAL CONVERTED [CONVERTED ...]`: the cost of each conversion, as a table."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from hearth.convert.errors import ConversionError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("original", type=Path, help="the checkpoint folder that was converted")
    parser.add_argument("converted", type=Path, nargs="+", help="one or more converted GGUFs")
    parser.add_argument(
        "--text-file",
        type=Path,
        default=None,
        help="score this text instead of the built-in paragraph",
    )
    parser.add_argument("--threads", type=int, default=None, help="llama.cpp threads")


def run(args: argparse.Namespace) -> int:
    text = None
    if args.text_file is not None:
        text = args.text_file.read_text(encoding="utf-8")
    return report_verification(args.original, args.converted, args.threads, text)


def report_verification(
    original: Path, converted: Sequence[Path], threads: int | None, text: str | None = None
) -> int:
    from hearth.convert.verify import VERIFY_TEXT, verify_conversions

    try:
        results = verify_conversions(original, converted, text or VERIFY_TEXT, threads)
    except ConversionError as error:
        print(f"hearth verify: error: {error}", file=sys.stderr)
        return 1
    first = results[0]
    print(f"reference: {first.reference}, {first.tokens} scored tokens")
    header = (
        f"{'model':<40} {'type':<8} {'size':>9} {'top-1':>7} {'mean KL':>9} {'ppl':>8} "
        f"{'ref ppl':>8}"
    )
    print(header)
    for r in results:
        size = f"{r.converted.stat().st_size / 2**20:.0f} MiB"
        print(
            f"{r.converted.name:<40} {r.file_type:<8} {size:>9} {r.top1_agreement:>7.1%} "
            f"{r.mean_kl:>9.5f} {r.perplexity:>8.3f} {r.reference_perplexity:>8.3f}"
        )
    return 0
