"""`hearth convert SRC [-o OUT.gguf] [--outtype TYPE] [--verify]`.

SRC is a folder, or a Hugging Face repository id (`owner/name`) when no such folder exists:
then only the files the conversion reads are downloaded first (convert/hub.py). A PEFT LoRA
adapter (a folder with adapter_config.json) becomes a GGUF LoRA adapter (convert/lora.py).

Failures the user can fix (a missing shard, an unknown architecture, an existing output, a
repository that is not there) end with one line on stderr and exit status 1; nothing is left
at the output path.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from hearth.convert.errors import ConversionError
from hearth.convert.quantize import (
    ADAPTER_OUT_TYPES,
    DEFAULT_ADAPTER_OUT_TYPE,
    DEFAULT_OUT_TYPE,
    OUT_TYPES,
)

if TYPE_CHECKING:
    from hearth.convert.converter import ConvertedModel
    from hearth.convert.lora import ConvertedAdapter


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help="a Hugging Face model folder, a Meta consolidated.*.pth folder, "
        "a PEFT LoRA adapter folder, or a Hugging Face repository id "
        "(owner/name) to download from",
    )
    parser.add_argument(
        "-o",
        "--outfile",
        type=Path,
        default=None,
        help="the GGUF to write (default: <folder or repository name>-<TYPE>.gguf here)",
    )
    parser.add_argument(
        "--revision",
        default=None,
        help="with a repository id: the branch, tag or commit (default: main)",
    )
    types = ", ".join(f"{t.name}: {t.about}" for t in OUT_TYPES.values())
    parser.add_argument(
        "--outtype",
        choices=list(OUT_TYPES),
        default=None,
        help=f"default {DEFAULT_OUT_TYPE} ({DEFAULT_ADAPTER_OUT_TYPE} for a LoRA "
        f"adapter, which takes {', '.join(ADAPTER_OUT_TYPES)}). {types}",
    )
    parser.add_argument(
        "--base",
        type=Path,
        default=None,
        help="for a LoRA adapter: the base model's folder (only its config.json "
        "is read; default: the adapter's base_model_name_or_path)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for quantizing and verifying (default: all cores)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="afterwards, compare the GGUF against the original checkpoint",
    )


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # SystemExit unwinds through the staging code, which then removes the partial file.
    raise SystemExit(128 + signum)


def _local_or_fetched(source: str, revision: str | None) -> tuple[Path, str]:
    """The folder to convert and the model's name: `source` itself when it is a path that
    exists (or cannot be a repository id), else the repository's files, downloaded."""
    from hearth.convert.hub import fetch_checkpoint, is_repo_id

    folder = Path(source).expanduser()
    if folder.exists() or not is_repo_id(source):
        return folder, folder.resolve().name
    fetched = fetch_checkpoint(source, revision)
    return fetched.folder, fetched.name


def _convert(
    args: argparse.Namespace, source: Path, name: str
) -> ConvertedModel | ConvertedAdapter:
    from hearth.convert.converter import convert_checkpoint, default_output
    from hearth.convert.lora import convert_adapter, is_adapter_folder

    if is_adapter_folder(source):
        if args.verify:
            raise ConversionError(
                "--verify compares a model with its original; convert the "
                "adapter, then serve it with its base (hearth serve --lora)"
            )
        out_type = OUT_TYPES[args.outtype or DEFAULT_ADAPTER_OUT_TYPE]
        output = args.outfile or default_output(name, out_type)
        return convert_adapter(
            source, output, out_type, base=args.base, force=args.force, name=name
        )
    out_type = OUT_TYPES[args.outtype or DEFAULT_OUT_TYPE]
    output = args.outfile or default_output(name, out_type)
    return convert_checkpoint(
        source, output, out_type, force=args.force, threads=args.threads, name=name
    )


def run(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    started = time.perf_counter()
    try:
        if args.outfile is not None and args.outfile.exists() and not args.force:
            # Said before any download, not after it.
            raise ConversionError(f"{args.outfile} exists; pass --force to overwrite it")
        source, name = _local_or_fetched(args.source, args.revision)
        converted = _convert(args, source, name)
    except ConversionError as error:
        print(f"hearth convert: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hearth convert: interrupted", file=sys.stderr)
        return 130
    size_mib = converted.path.stat().st_size / 2**20
    print(
        f"wrote {converted.path} ({converted.architecture}, {converted.out_type}, "
        f"{size_mib:.1f} MiB) in {time.perf_counter() - started:.1f} s"
    )
    if args.verify:
        from hearth.convert.verify_cli import report_verification

        return report_verification(source, [converted.path], args.threads)
    return 0
