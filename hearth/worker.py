"""`hearth worker`: llama.cpp's RPC server, from the llama.cpp libraries Hearth installed.

A `hearth serve --rpc HOST:PORT,...` elsewhere then keeps some of a model's layers in this
machine's memory and computes them here. llama.cpp's RPC protocol has no authentication and
trusts what it receives, so the worker binds 127.0.0.1 unless told otherwise, and refuses an
address that is not loopback or private (0.0.0.0 included) without --allow-public-bind.

ggml's server loop blocks in C and never returns to Python, so it runs in a daemon thread
and the main thread waits for SIGINT or SIGTERM, which then end the process.
"""

from __future__ import annotations

import argparse
import signal
import socket
import sys
import threading

from hearth.flags import add_settings_flags, settings_from_args
from hearth.runtime.settings import WorkerSettings


def configure(parser: argparse.ArgumentParser) -> None:
    add_settings_flags(parser, WorkerSettings)


def run(args: argparse.Namespace) -> int:
    from hearth.engine.rpc import RpcUnavailable, is_private, rpc_library, serve_worker

    settings = settings_from_args(WorkerSettings, args)
    if not settings.allow_public_bind and not is_private(settings.host):
        print(
            f"hearth: refusing to bind {settings.host}: llama.cpp's RPC protocol is "
            "unauthenticated, so a worker belongs on loopback or a private network only; "
            "pass --allow-public-bind if this address is private to you",
            file=sys.stderr,
        )
        return 2
    try:
        rpc_library()
    except RpcUnavailable as missing:
        print(f"hearth: {missing}", file=sys.stderr)
        return 1
    try:  # ggml's server takes an IPv4 address only
        address = socket.getaddrinfo(settings.host, None, socket.AF_INET)[0][4][0]
    except socket.gaierror:
        print(f"hearth: {settings.host} has no IPv4 address to bind", file=sys.stderr)
        return 2
    if settings.cache_dir is not None:
        settings.cache_dir.mkdir(parents=True, exist_ok=True)
    endpoint = f"{address}:{settings.port}"
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    server = threading.Thread(
        target=serve_worker,
        args=(endpoint, settings.cache_dir, settings.threads),
        name="rpc-server",
        daemon=True,
    )
    server.start()
    while not stopped.wait(0.5):
        if not server.is_alive():  # ggml's loop returned: it could not start (port taken...)
            print(f"hearth: the RPC worker could not listen on {endpoint}", file=sys.stderr)
            return 1
    return 0
