"""`hearth pull`, `hearth list` and `hearth rm`: the model library from the terminal.

Each fails with one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hearth.flags import add_settings_flags, settings_from_args
from hearth.runtime.settings import ModelSettings


@dataclass(frozen=True)
class Subcommand:
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _library_flags(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser, ModelSettings)


def _configure_pull(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "repo",
        metavar="REPO[:QUANT]",
        help="a Hugging Face repository, e.g. owner/Model-GGUF:Q4_K_M",
    )
    _library_flags(parser)


def _run_pull(args: argparse.Namespace) -> int:
    from hearth.convert.errors import ConversionError
    from hearth.runtime.pull import PullError, pull

    settings = settings_from_args(ModelSettings, args)
    try:
        entry = pull(args.repo, settings)
    except (PullError, ConversionError) as failed:
        print(f"hearth: {failed}", file=sys.stderr)
        return 1
    size = sum(Path(f).stat().st_size for f in entry.files)
    print(f"pulled {entry.id} ({entry.quant}, {_size(size)}) from {entry.repo}")
    print(f"  {entry.path}")
    return 0


def _run_list(args: argparse.Namespace) -> int:
    from hearth.runtime.library import ModelLibrary, gguf_facts

    settings = settings_from_args(ModelSettings, args)
    try:
        library = ModelLibrary.scan(settings)
    except FileNotFoundError as missing:
        print(f"hearth: {missing}", file=sys.stderr)
        return 1
    rows = [("ID", "ARCH", "QUANT", "SIZE", "CONTEXT", "WHERE")]
    for spec in library.specs:
        if spec.missing:
            rows.append(
                (
                    spec.id,
                    "-",
                    "-",
                    "-",
                    "-",
                    f"{spec.path}  [missing: `{spec.fetch_command}` fetches it again]",
                )
            )
            continue
        if spec.path is None:
            rows.append((spec.id, "-", "-", "-", "-", f"{spec.hf} (pulled on first use)"))
            continue
        if not spec.path.is_file():
            rows.append((spec.id, "-", "-", "-", "-", f"{spec.path}  [file not found]"))
            continue
        try:
            facts = gguf_facts(spec.path)
        except (OSError, ValueError) as unreadable:
            rows.append((spec.id, "?", "?", "?", "?", f"{spec.path} ({unreadable})"))
            continue
        rows.append(
            (
                spec.id,
                facts.architecture,
                facts.quant,
                _size(facts.size_bytes),
                str(facts.context_length or "?"),
                f"{spec.path}  [{spec.source}]",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[5]
        )
    return 0


def _configure_rm(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_id", metavar="ID", help="a pulled model's id (see hearth list)")
    _library_flags(parser)


def _run_rm(args: argparse.Namespace) -> int:
    from hearth.runtime.library import PulledManifest

    settings = settings_from_args(ModelSettings, args)
    manifest = PulledManifest(settings.library_dir)
    entry = manifest.find(args.model_id)
    if entry is None:
        pulled = ", ".join(e.id for e in manifest.entries()) or "none"
        print(
            f"hearth: {args.model_id} is not a pulled model (pulled: {pulled}); "
            "models in --models-dir are files you delete yourself",
            file=sys.stderr,
        )
        return 1
    shared = {f for other in manifest.entries() if other.id != entry.id for f in other.files}
    for name in entry.files:
        if name in shared:
            print(f"keeping {name}: another pulled model uses it")
            continue
        path = Path(name)
        size = path.stat().st_size if path.exists() else 0
        print(f"removing {path} ({_size(size)})")
        _remove_cached(path)
    manifest.remove(entry.id)
    print(f"removed {entry.id}")
    return 0


def _remove_cached(path: Path) -> None:
    """A hub cache file is a symlink into blobs/: remove both, so the space comes back."""
    target = path.resolve() if path.is_symlink() else None
    path.unlink(missing_ok=True)
    if target is not None:
        target.unlink(missing_ok=True)


def _size(size: int) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


pull = Subcommand(_configure_pull, _run_pull)
list_models = Subcommand(_library_flags, _run_list)
rm = Subcommand(_configure_rm, _run_rm)
