"""`hearth convert SRC [-o OUT.gguf] [--outtype TYPE] [--verify]`.

Failures the user can fix (a missing shard, an unknown architecture, an existing output) end
with one line on stderr and exit status 1; nothing is left at the output path.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from hearth.convert.errors import ConversionError
from hearth.convert.quantize import DEFAULT_OUT_TYPE, OUT_TYPES


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path,
                        help="a Hugging Face model folder or a Meta consolidated.*.pth folder")
    parser.add_argument("-o", "--outfile", type=Path, default=None,
                        help="the GGUF to write (default: <folder name>-<TYPE>.gguf here)")
    types = ", ".join(f"{t.name}: {t.about}" for t in OUT_TYPES.values())
    parser.add_argument("--outtype", choices=list(OUT_TYPES), default=DEFAULT_OUT_TYPE,
                        help=f"default {DEFAULT_OUT_TYPE}. {types}")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for quantizing and verifying (default: all cores)")
    parser.add_argument("--verify", action="store_true",
                        help="afterwards, compare the GGUF against the original checkpoint")


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the staging code, which then removes the partial file.
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    from hearth.convert.converter import convert_checkpoint, default_output

    out_type = OUT_TYPES[args.outtype]
    output = args.outfile or default_output(args.source, out_type)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    started = time.perf_counter()
    try:
        converted = convert_checkpoint(args.source, output, out_type, force=args.force,
                                       threads=args.threads)
    except ConversionError as error:
        print(f"hearth convert: error: {error}", file=sys.stderr)
        return 1
    size_mib = converted.path.stat().st_size / 2**20
    print(f"wrote {converted.path} ({converted.architecture}, {converted.out_type}, "
          f"{size_mib:.1f} MiB) in {time.perf_counter() - started:.1f} s")
    if args.verify:
        from hearth.convert.verify_cli import report_verification

        return report_verification(args.source, [converted.path], args.threads)
    return 0
