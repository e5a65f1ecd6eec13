"""Which of llama.cpp's optional CPU kernels may run: AMX stays off unless asked for.

When it loads a model, llama.cpp repacks weights into "extra" buffer types for faster CPU
kernels. On Intel CPUs with AMX (Sapphire Rapids and newer) it uses AMX tiles, and
elsewhere interleaved layouts (CPU_REPACK). On a KVM Xeon with amx_int8, the AMX path
crashed the process in ggml_backend_amx_mul_mat at the first decode, for every model and
thread count tried. llama.cpp #20824 reports the same crash and is still open, and
ollama's and dspy's CI runners hit it too. A server that segfaults on a common cloud CPU
is worse than one that skips a faster kernel. So on builds with AMX the extra buffer
types are turned off, unless the operator opts in with --amx. llama.cpp has one switch
for all of them, so CPU_REPACK goes too on those machines. Elsewhere nothing changes.
"""

from __future__ import annotations

import functools

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_api


@functools.cache
def has_amx() -> bool:
    """Whether this llama.cpp build runs AMX kernels on this CPU."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()


def extra_buffers_allowed(amx: bool = False) -> bool:
    """Whether a model may load into llama.cpp's extra buffer types."""
    return amx or not has_amx()


@functools.cache
def keep_amx_off_by_default() -> None:
    """Make every model llama-cpp-python's `Llama` loads in this process leave AMX off.

    `Llama` builds its model parameters from `llama_model_default_params()` and offers
    no way to change use_extra_bufts, so the default itself is changed, once. The
    conversion checks (`--verify`, the tokenizer check) and the tests load through it.
    """
    default_params = llama_cpp_api.llama_model_default_params

    def without_amx() -> llama_cpp.llama_model_params:
        params = default_params()
        params.use_extra_bufts = extra_buffers_allowed()
        return params

    llama_cpp_api.llama_model_default_params = without_amx
