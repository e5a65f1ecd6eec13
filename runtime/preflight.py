"""What `hearth serve` checks before it loads a model: the address and every file it names.

Loading takes seconds to a minute; a port already taken or an unreadable --prompt used to
surface only afterwards (13-45 s of 503s, then an exit). Each check here fails in well
under a second with one line, and never quotes a file's content: a mistyped `--prompt
/etc/shadow` must not print a line of it.
"""

from __future__ import annotations

import socket

from hearth.prompts import PromptError, load_chat_format
from hearth.prompts.loading import CHOOSERS
from hearth.runtime.settings import ServerSettings


class StartupCheckFailed(Exception):
    """The server cannot start; the message is the one line to print."""


def check_address(host: str, port: int) -> None:
    """Bind the address for a moment, as uvicorn will, to learn whether it is free."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        # uvicorn sets SO_REUSEADDR too: a port in TIME_WAIT is free for it, and so for us.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            raise StartupCheckFailed(
                f"cannot listen on {host}:{port}: {error.strerror or error}"
            ) from None


def check_prompt(settings: ServerSettings) -> None:
    """Load each transcript prompt named (the server's and each config model's) now; a
    model's own template is checked once it loads."""
    named = [(settings.prompt, settings.user_name, settings.ai_name)]
    named += [
        (m.prompt, m.user_name or settings.user_name, m.ai_name or settings.ai_name)
        for m in settings.models
    ]
    for prompt, user_name, ai_name in named:
        if prompt is None or prompt in CHOOSERS:
            continue
        try:
            load_chat_format(prompt, model_template=None, user_name=user_name, ai_name=ai_name)
        except PromptError as unusable:
            raise StartupCheckFailed(str(unusable)) from None


def check_before_loading(settings: ServerSettings) -> None:
    check_prompt(settings)
    check_address(settings.host, settings.port)
