"""llama.cpp's RPC backend: a worker that lends its memory and compute to a model, and the
client side that offloads a model's layers to workers.

Both are ggml's own code (ggml-rpc), reached through ctypes in the libraries that
llama-cpp-python installed, so a worker machine needs only Hearth installed. They exist only
when llama.cpp was built with GGML_RPC on; `rpc_library()` says so in one line otherwise.

Two properties of ggml-rpc shape everything that uses it:
- A worker serves one client connection at a time (it accepts the next when the current one
  closes), so a worker lends itself to one model of one server at a time.
- The client aborts the whole process (GGML_ABORT) when a worker cannot be reached or its
  connection breaks, at load, during a decode, even when freeing the model. That is why a
  model with workers runs in a process of its own (engine/isolated.py), and why a worker is
  asked whether it answers (`hello`) before a model is loaded on it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import socket
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import llama_cpp

from hearth.engine.errors import ModelLoadError, WorkerUnreachable

REBUILD = (
    'CMAKE_ARGS="-DGGML_RPC=on" pip install --force-reinstall --no-cache-dir --no-deps '
    f"llama-cpp-python=={llama_cpp.__version__}"
)
NO_RPC = f"this llama.cpp was built without RPC (GGML_RPC); rebuild it with: {REBUILD}"

DEFAULT_PORT = 50052  # llama.cpp's rpc-server's
HELLO = 14  # RPC_CMD_HELLO, fixed across protocol versions
CONN_CAPS = 24  # RPC_CONN_CAPS_SIZE: transport capabilities; zeros ask for plain TCP
PROTOCOL_MAJOR = 7
DEVICE_CPU, DEVICE_GPU = 0, 1


class RpcUnavailable(ModelLoadError):
    """The installed llama.cpp has no RPC backend."""

    def __init__(self) -> None:
        super().__init__(NO_RPC)


def _lib_dir() -> Path:
    return Path(llama_cpp.__file__).parent / "lib"


def _library(name: str) -> ctypes.CDLL | None:
    suffix = {"darwin": "dylib", "win32": "dll"}.get(sys.platform, "so")
    prefix = "" if sys.platform == "win32" else "lib"
    path = _lib_dir() / f"{prefix}{name}.{suffix}"
    return ctypes.CDLL(str(path)) if path.is_file() else None


def _bind(lib: ctypes.CDLL, name: str, restype: object, *argtypes: object) -> None:
    function = getattr(lib, name)
    function.restype = restype
    function.argtypes = list(argtypes)


_P = ctypes.c_void_p
_loaded: tuple[ctypes.CDLL, ctypes.CDLL] | None = None


def rpc_library() -> tuple[ctypes.CDLL, ctypes.CDLL]:
    """(ggml, ggml-rpc) with the functions used here typed; RpcUnavailable without RPC."""
    global _loaded
    if _loaded is None:
        rpc = _library("ggml-rpc")
        ggml = _library("ggml")
        if rpc is None or ggml is None or not hasattr(rpc, "ggml_backend_rpc_add_server"):
            raise RpcUnavailable()
        size = ctypes.c_size_t
        _bind(rpc, "ggml_backend_rpc_add_server", _P, ctypes.c_char_p)
        _bind(rpc, "ggml_backend_rpc_start_server", None, ctypes.c_char_p, ctypes.c_char_p,
              size, size, ctypes.POINTER(_P))  # fmt: skip
        _bind(ggml, "ggml_backend_dev_count", size)
        _bind(ggml, "ggml_backend_dev_get", _P, size)
        _bind(ggml, "ggml_backend_dev_type", ctypes.c_int, _P)
        _bind(ggml, "ggml_backend_dev_name", ctypes.c_char_p, _P)
        _bind(ggml, "ggml_backend_dev_description", ctypes.c_char_p, _P)
        _bind(ggml, "ggml_backend_dev_memory", None, _P, ctypes.POINTER(size),
              ctypes.POINTER(size))  # fmt: skip
        _bind(ggml, "ggml_backend_reg_dev_count", size, _P)
        _bind(ggml, "ggml_backend_reg_dev_get", _P, _P, size)
        _loaded = (ggml, rpc)
    return _loaded


# ---- the worker ---------------------------------------------------------------------------


def local_devices() -> list[int]:
    """What a worker lends: this machine's GPUs when it has any, else its CPU."""
    ggml, _ = rpc_library()
    devices = [ggml.ggml_backend_dev_get(i) for i in range(ggml.ggml_backend_dev_count())]
    gpus = [d for d in devices if ggml.ggml_backend_dev_type(d) == DEVICE_GPU]
    return gpus or [d for d in devices if ggml.ggml_backend_dev_type(d) == DEVICE_CPU][:1]


def serve_worker(endpoint: str, cache_dir: Path | None, threads: int) -> None:
    """Run ggml's RPC server on `endpoint` (HOST:PORT); returns only if it cannot start."""
    llama_cpp.llama_backend_init()
    _, rpc = rpc_library()
    devices = local_devices()
    array = (_P * len(devices))(*devices)
    cache = str(cache_dir).encode() if cache_dir is not None else None
    rpc.ggml_backend_rpc_start_server(endpoint.encode(), cache, threads, len(devices), array)


def is_private(host: str) -> bool:
    """Whether every address `host` names is loopback or on a private network; 0.0.0.0 and
    :: (every interface) are not."""
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    addresses = {ipaddress.ip_address(info[4][0]) for info in infos}
    return bool(addresses) and all(
        (a.is_loopback or a.is_private) and not a.is_unspecified for a in addresses
    )


# ---- the client ---------------------------------------------------------------------------


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"an RPC worker is HOST:PORT, got {endpoint!r}")
    return host.strip("[]"), int(port)


def hello(endpoint: str, timeout: float = 5.0) -> None:
    """Shake hands with a worker as llama.cpp's client does, and hang up; raises
    WorkerUnreachable naming it when it refuses, is busy with another client (a worker
    serves one at a time) or speaks another protocol version."""
    host, port = split_endpoint(endpoint)
    request = bytes([HELLO]) + struct.pack("<Q", CONN_CAPS) + bytes(CONN_CAPS)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            answer = _receive(sock, 8 + 4 + CONN_CAPS)
    except TimeoutError:
        raise WorkerUnreachable(endpoint, "did not answer (busy with another client?)") from None
    except OSError as error:
        raise WorkerUnreachable(endpoint, error.strerror or str(error)) from None
    major, minor, patch = answer[8:11]
    if major != PROTOCOL_MAJOR:
        raise WorkerUnreachable(endpoint, f"speaks RPC protocol {major}.{minor}.{patch}")


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError(0, "closed the connection")
        data += chunk
    return data


def add_workers(endpoints: tuple[str, ...]) -> list[int]:
    """The devices of these workers, in order, for llama_model_params.devices. Each is asked
    first: ggml aborts the process on a worker it cannot reach."""
    ggml, rpc = rpc_library()
    for endpoint in endpoints:
        hello(endpoint)
    devices = []
    for endpoint in endpoints:
        reg = rpc.ggml_backend_rpc_add_server(endpoint.encode())
        devices += [
            ggml.ggml_backend_reg_dev_get(reg, i)
            for i in range(ggml.ggml_backend_reg_dev_count(reg))
        ]
    return devices


@dataclass(frozen=True)
class Device:
    name: str
    description: str
    free_bytes: int
    total_bytes: int

    def report(self) -> dict[str, object]:
        return {
            "name": self.name,
            "description": self.description,
            "free_mib": self.free_bytes >> 20,
            "total_mib": self.total_bytes >> 20,
        }


def describe(device: int) -> Device:
    ggml, _ = rpc_library()
    free, total = ctypes.c_size_t(), ctypes.c_size_t()
    ggml.ggml_backend_dev_memory(device, ctypes.byref(free), ctypes.byref(total))
    return Device(
        ggml.ggml_backend_dev_name(device).decode(errors="replace"),
        ggml.ggml_backend_dev_description(device).decode(errors="replace"),
        free.value,
        total.value,
    )
