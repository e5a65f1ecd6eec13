"""A model in a process of its own: the engine for models whose layers live on RPC workers.

ggml's RPC client aborts the process (GGML_ABORT) when a worker's connection breaks, during
a decode or even while freeing the model (engine/rpc.py). In the server's own process that
would end every model and every client. So a model with workers runs a `LlamaEngine` in a
child process, and `IsolatedEngine` speaks for it here over a pipe: requests go down, events
and answers come up. When the child dies, its open generations fail with
`WorkerUnreachable` naming the worker that no longer answers (each is asked), the engine
stops being `ready`, and the registry loads the model again at its next request, which
fails fast while the worker is still away.

A worker that vanishes without closing its connection (a host switched off, a cable pulled)
leaves the child waiting on TCP, which can take many minutes to give up. So while
generations are open and the child sends none of their events for STALL_SECONDS, the child
is killed and the generations fail the same way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from multiprocessing.connection import Connection
from typing import Any

from hearth.engine import errors, rpc
from hearth.engine.base import (
    EngineOptions,
    Finished,
    GenerationEvent,
    GenerationRequest,
    ModelInfo,
    Prompt,
)

log = logging.getLogger(__name__)

# No event from a child with open generations for this long: its worker is taken as gone.
# Reading a long prompt emits no event, so this is well above a slow prompt's reading.
STALL_SECONDS = 120.0
# A call (tokenize, submit...) the child does not answer within this is a dead child.
CALL_SECONDS = 60.0
SNAPSHOT_SECONDS = 1.0

Event = GenerationEvent | BaseException


def _encode_error(error: BaseException) -> tuple[str, str, dict[str, Any]]:
    if isinstance(error, errors.EngineError):
        return type(error).__name__, error.message, dict(vars(error))
    return "GenerationFailed", f"{type(error).__name__}: {error}", {}


def _decode_error(name: str, message: str, attributes: dict[str, Any]) -> errors.EngineError:
    cls = getattr(errors, name, None) or getattr(rpc, name, None)
    if not (isinstance(cls, type) and issubclass(cls, errors.EngineError)):
        return errors.GenerationFailed(message)
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(attributes)
    return error


class RemoteGeneration:
    """One generation running in the child: its events arrive through the engine's reader."""

    def __init__(self, engine: IsolatedEngine, stream_id: int) -> None:
        self._engine = engine
        self.stream_id = stream_id
        self.queue: asyncio.Queue[Event] = asyncio.Queue()
        self.prompt_tokens = 0
        self.done = False

    def cancel(self) -> None:
        if not self.done:
            self.done = True
            self._engine._forget(self.stream_id, tell_child=True)

    def finish_now(self) -> None:
        if not self.done:
            self._engine._send(("finish", self.stream_id))

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            while True:
                event = await self.queue.get()
                if isinstance(event, BaseException):
                    self.done = True
                    raise event
                yield event
                if isinstance(event, Finished):
                    self.done = True
                    return
        finally:
            self.cancel()


class IsolatedEngine:
    def __init__(self, options: EngineOptions) -> None:
        self._options = options
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._ids = itertools.count()
        self._calls: dict[int, concurrent.futures.Future[Any]] = {}
        self._streams: dict[int, RemoteGeneration] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._info: ModelInfo | None = None
        self._snapshot: dict[str, Any] = {}
        self._last_event = time.monotonic()
        self._watchdog: asyncio.Task[None] | None = None
        self._embeddings = 0
        self.failure: errors.EngineError | None = None
        self._closing = False

    # ---- lifecycle ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        alive = self._process is not None and self._process.poll() is None
        return alive and self._info is not None and self.failure is None

    @property
    def active(self) -> int:
        return len(self._streams) + self._embeddings

    @property
    def info(self) -> ModelInfo:
        if self._info is None:
            raise errors.NotStarted("The model is still loading.")
        return self._info

    async def start(self) -> None:
        # Asked here first, so that an absent worker fails in a moment with its name.
        for endpoint in self._options.rpc:
            await asyncio.to_thread(rpc.hello, endpoint)
        self._loop = asyncio.get_running_loop()
        # A process of its own, started as `python -m` (not multiprocessing's spawn, which
        # would import the server's __main__ again), speaking over an inherited socket.
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            # ggml's abort otherwise attaches gdb to print a backtrace into the server's log.
            env={**os.environ, "GGML_NO_BACKTRACE": "1"},
        )
        theirs.close()
        self._conn = Connection(os.dup(ours.fileno()))
        ours.close()
        self._conn.send(self._options)
        ready: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._calls[-1] = ready
        threading.Thread(target=self._read, name="hearth-model-reader", daemon=True).start()
        self._info = await asyncio.wrap_future(ready)
        self._watchdog = asyncio.create_task(self._watch())

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        process = self._process
        if process is None:
            return
        self._closing = True
        self._send(("close",))
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)

    # ---- what the runtime asks ----------------------------------------------------------

    def count_tokens(self, prompt: Prompt) -> int:
        return self._call("count_tokens", prompt)

    def tokenize(self, prompt: Prompt) -> list[int]:
        return self._call("tokenize", prompt)

    def detokenize(self, tokens: list[int]) -> str:
        return self._call("detokenize", tokens)

    def token_piece(self, token: int) -> str:
        return self._call("token_piece", token)

    def load(self) -> dict[str, Any]:
        return dict(self._snapshot)

    async def embed(self, inputs: list[Prompt | list[int]]) -> tuple[list[list[float]], int]:
        self._embeddings += 1
        try:
            return await asyncio.wrap_future(self._request("embed", inputs))
        finally:
            self._embeddings -= 1

    def submit(self, request: GenerationRequest) -> RemoteGeneration:
        return self.submit_choices(request, 1)[0]

    def submit_choices(self, request: GenerationRequest, n: int) -> list[RemoteGeneration]:
        if self.failure is not None:
            raise self.failure
        generations = [RemoteGeneration(self, next(self._ids)) for _ in range(n)]
        for generation in generations:
            self._streams[generation.stream_id] = generation
        try:
            counts = self._call("submit", request, [g.stream_id for g in generations])
        except BaseException:
            for generation in generations:
                self._streams.pop(generation.stream_id, None)
            raise
        self._last_event = time.monotonic()
        for generation, count in zip(generations, counts, strict=True):
            generation.prompt_tokens = count
        return generations

    # ---- the pipe -----------------------------------------------------------------------

    def _request(self, method: str, *args: object) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self.failure is not None:
            future.set_exception(self.failure)
            return future
        call_id = next(self._ids)
        self._calls[call_id] = future
        self._send(("call", call_id, method, args))
        return future

    def _call(self, method: str, *args: object) -> Any:
        try:
            return self._request(method, *args).result(timeout=CALL_SECONDS)
        except concurrent.futures.TimeoutError:
            self._kill("did not answer")
            raise errors.GenerationFailed("the model's process did not answer") from None

    def _send(self, message: tuple[object, ...]) -> None:
        if self._conn is None:
            return
        try:
            with self._send_lock:
                self._conn.send(message)
        except (OSError, ValueError):
            pass  # the child is gone: the reader reports why

    def _forget(self, stream_id: int, *, tell_child: bool) -> None:
        if self._streams.pop(stream_id, None) is not None and tell_child:
            self._send(("cancel", stream_id))

    def _read(self) -> None:
        """The reader thread: hands the child's messages to the event loop, then its death."""
        assert self._conn is not None and self._loop is not None
        try:
            while True:
                message = self._conn.recv()
                kind = message[0]
                if kind in ("result", "error", "ready", "failed"):
                    self._answer(message)
                elif kind == "snapshot":
                    self._snapshot = message[1]
                else:
                    self._loop.call_soon_threadsafe(self._deliver, message[1], message[2])
        except (EOFError, OSError):
            pass
        if self._closing:
            return
        self.failure = self.failure or self._cause_of_death()
        if self._info is not None:  # a load that failed was reported by its own error
            log.error("model %s stopped: %s", self._options.name, self.failure.message)
        for future in list(self._calls.values()):
            if not future.done():
                future.set_exception(self.failure)
        self._calls.clear()
        with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is listening
            self._loop.call_soon_threadsafe(self._fail_streams)

    def _answer(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        call_id = -1 if kind in ("ready", "failed") else message[1]
        future = self._calls.pop(call_id, None)
        if future is None or future.done():
            return
        if kind in ("result", "ready"):
            future.set_result(message[-1])
        else:
            future.set_exception(_decode_error(*message[-1]))

    def _deliver(self, stream_id: int, event: Event | tuple[str, str, dict[str, Any]]) -> None:
        self._last_event = time.monotonic()
        generation = self._streams.get(stream_id)
        if generation is None:
            return
        if isinstance(event, tuple):
            event = _decode_error(*event)
        if isinstance(event, (Finished, BaseException)):
            self._forget(stream_id, tell_child=False)
        generation.queue.put_nowait(event)

    def _fail_streams(self) -> None:
        assert self.failure is not None
        for stream_id, generation in list(self._streams.items()):
            self._forget(stream_id, tell_child=False)
            generation.queue.put_nowait(self.failure)

    def _cause_of_death(self) -> errors.EngineError:
        for endpoint in self._options.rpc:
            try:
                rpc.hello(endpoint, timeout=2.0)
            except errors.WorkerUnreachable as unreachable:
                return unreachable
        code = self._process.poll() if self._process is not None else None
        return errors.GenerationFailed(f"the model's process ended (exit code {code})")

    def _kill(self, why: str) -> None:
        if self._process is not None and self._process.poll() is None:
            log.error("model %s: %s; stopping its process", self._options.name, why)
            self._process.kill()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            stalled = time.monotonic() - self._last_event > STALL_SECONDS
            if self._streams and stalled:
                self._kill(f"no progress for {STALL_SECONDS:.0f} s")


# ---- the child process --------------------------------------------------------------------


def _child_main(fd: int) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    conn = Connection(fd)
    asyncio.run(_serve(conn, conn.recv()))


async def _serve(conn: Connection, options: EngineOptions) -> None:
    from hearth.engine.llama import LlamaEngine

    engine = LlamaEngine(options)
    try:
        await engine.start()
    except errors.EngineError as failure:
        conn.send(("failed", _encode_error(failure)))
        return
    conn.send(("ready", engine.info))
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[tuple[Any, ...] | None] = asyncio.Queue()

    def read() -> None:
        try:
            while True:
                loop.call_soon_threadsafe(inbox.put_nowait, conn.recv())
        except (EOFError, OSError):
            loop.call_soon_threadsafe(inbox.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    child = _Child(conn, engine)
    snapshots = asyncio.create_task(child.send_snapshots())
    while (message := await inbox.get()) is not None and message[0] != "close":
        child.handle(message)
    snapshots.cancel()
    await engine.close()


class _Child:
    def __init__(self, conn: Connection, engine: Any) -> None:
        self.conn = conn
        self.engine = engine
        self.generations: dict[int, Any] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "call":
            self._call(*message[1:])
        elif kind == "cancel" and message[1] in self.generations:
            self.generations.pop(message[1]).cancel()
        elif kind == "finish" and message[1] in self.generations:
            self.generations[message[1]].finish_now()

    def _call(self, call_id: int, method: str, args: tuple[Any, ...]) -> None:
        try:
            if method == "embed":
                self._spawn(self._embed(call_id, *args))
                return
            if method == "submit":
                result = self._submit(*args)
            else:
                result = getattr(self.engine, method)(*args)
        except Exception as error:  # noqa: BLE001 - every failure goes back to the caller
            self.conn.send(("error", call_id, _encode_error(error)))
            return
        self.conn.send(("result", call_id, result))

    def _submit(self, request: GenerationRequest, stream_ids: list[int]) -> list[int]:
        n = len(stream_ids)
        made = self.engine.submit_choices(request, n) if n > 1 else [self.engine.submit(request)]
        for stream_id, generation in zip(stream_ids, made, strict=True):
            self.generations[stream_id] = generation
            self._spawn(self._pump(stream_id, generation))
        return [generation.prompt_tokens for generation in made]

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _pump(self, stream_id: int, generation: Any) -> None:
        try:
            async for event in generation:
                self.conn.send(("event", stream_id, event))
        except Exception as error:  # noqa: BLE001 - the parent raises it in its stream
            self.conn.send(("event", stream_id, _encode_error(error)))
        finally:
            self.generations.pop(stream_id, None)

    async def _embed(self, call_id: int, inputs: list[Prompt | list[int]]) -> None:
        try:
            result = await self.engine.embed(inputs)
        except Exception as error:  # noqa: BLE001 - the caller gets it
            self.conn.send(("error", call_id, _encode_error(error)))
            return
        self.conn.send(("result", call_id, result))

    async def send_snapshots(self) -> None:
        while True:
            self.conn.send(("snapshot", self.engine.load()))
            await asyncio.sleep(SNAPSHOT_SECONDS)


if __name__ == "__main__":
    _child_main(int(sys.argv[1]))
