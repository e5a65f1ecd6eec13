"""Command-line flags generated from a settings model, so each setting is defined once.

`add_settings_flags` turns every field of a pydantic-settings model into `--field-name`,
with the field's description as help. Flags left out are simply absent from the namespace,
so the environment, the config file and the field defaults decide them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import ValidationError

from hearth.runtime.settings import HearthSettings

S = TypeVar("S", bound=HearthSettings)


def add_settings_flags(parser: argparse.ArgumentParser, settings: type[HearthSettings]) -> None:
    parser.add_argument(
        "--config", type=Path, default=None, help="TOML file with settings (keys as field names)."
    )
    for name, field in settings.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and extra.get("cli") is False:
            continue  # set in the config file only (a table has no flag form)
        flag = "--" + name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        if field.annotation is bool or bool in get_args(field.annotation):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["metavar"] = name.upper()
        env = f"{settings.model_config.get('env_prefix', '')}{name}".upper()
        kwargs["help"] = f"{field.description or ''} [env {env}]".strip()
        parser.add_argument(flag, **kwargs)


def settings_from_args(settings: type[S], args: argparse.Namespace) -> S:
    """Build settings from parsed flags; a bad value exits with one line naming the flag."""
    given = {name: getattr(args, name) for name in settings.model_fields if hasattr(args, name)}
    try:
        return settings.load(given, getattr(args, "config", None))  # type: ignore[return-value]
    except ValidationError as invalid:
        error = invalid.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:  # a check across flags names its flags in its message
            sys.exit(f"hearth: {message}")
        name = str(error["loc"][0])
        sys.exit(f"hearth: --{name.replace('_', '-')}: {message}")
    except (FileNotFoundError, ValueError) as problem:
        sys.exit(f"hearth: {problem}")
