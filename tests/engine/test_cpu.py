"""AMX stays off unless asked for: llama.cpp's AMX kernels segfaulted every decode here."""

from __future__ import annotations

import llama_cpp
import llama_cpp.llama_cpp as llama_cpp_api

from hearth.engine import cpu
from hearth.runtime.settings import ServerSettings


def test_extra_buffers_are_off_only_where_amx_would_run():
    amx = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
    assert cpu.has_amx() is amx
    assert cpu.extra_buffers_allowed() is not amx
    assert cpu.extra_buffers_allowed(amx=True) is True


def test_models_loaded_through_llama_get_the_same_default():
    """tests/conftest.py installs it, as `hearth convert --verify` does before loading."""
    cpu.keep_amx_off_by_default()
    assert llama_cpp_api.llama_model_default_params().use_extra_bufts is not cpu.has_amx()


def test_the_amx_flag_reaches_the_engine(tmp_path):
    model = tmp_path / "m.gguf"
    assert ServerSettings.load({}).engine_options(model, "m").amx is False
    assert ServerSettings.load({"amx": True}).engine_options(model, "m").amx is True
