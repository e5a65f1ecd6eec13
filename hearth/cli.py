"""`hearth`: one console script, a subcommand per layer.

Each subcommand lives in the module of its layer, which exposes `configure(parser)` and
`run(args) -> int` (or, as `module:name`, an object of that module that has both). Those
modules import their heavy dependencies (llama_cpp, torch, fastapi) inside `run`, so
`hearth --help` and `hearth convert` stay quick to start.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from hearth import __version__


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    module: str


COMMANDS: tuple[Command, ...] = (
    Command("serve", "serve a model over the OpenAI API (and the chat page)", "hearth.server.cli"),
    Command("chat", "chat with a model in the terminal", "hearth.chat"),
    Command(
        "worker",
        "lend this machine's memory and compute to a model served elsewhere (llama.cpp RPC)",
        "hearth.worker",
    ),
    Command("convert", "convert a PyTorch checkpoint to (quantized) GGUF", "hearth.convert.cli"),
    Command("verify", "compare a converted GGUF against its original", "hearth.convert.verify_cli"),
    Command("pull", "fetch a model from Hugging Face into the library", "hearth.library_cli:pull"),
    Command("list", "list the models this machine can serve", "hearth.library_cli:list_models"),
    Command("rm", "remove a pulled model", "hearth.library_cli:rm"),
    Command("batch", "submit and follow batch jobs on a running server", "hearth.batch_cli"),
    Command("eval", "judge two models (or formats) on a question set", "hearth.eval_cli"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"hearth {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        module_name, _, attribute = command.module.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as missing:
            if missing.name != module_name:
                raise
            continue  # a layer not built yet in this checkout
        if attribute:  # one module serving several commands: an object with configure/run
            module = getattr(module, attribute)
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help)
        module.configure(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # HTTP clients log every request at INFO; a pull would print a line per file fetched.
    for chatty in ("httpx", "httpx2"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
