"""The model library: every GGUF this machine can serve, each under one id.

Models come from, in this order (the first is the default model):
  1. `--model` (a library id, a path, or a file name in --models-dir), named by --alias;
  2. `[[models]]` tables of the config file, each with its own settings;
  3. every `*.gguf` in --models-dir (a split GGUF, `-00001-of-0000N`, is one model);
  4. the models `hearth pull` fetched, recorded in `pulled.json` under --library-dir;
  5. the SmolLM2-135M-Instruct that ships with Hearth.
An id found twice keeps its first place. Each model carries its own settings: the server's,
with whatever its config table sets, so the registry never merges settings itself.

A model may carry a LoRA adapter (a config table's `lora`, or `--lora`, which adds base +
adapter in front, as the default, under the adapter file's name). Base + adapter is a model of
its own, with its own engine, never the base's engine with the adapter switched on: llama.cpp
(0.3.36: llama_set_adapters_lora) applies adapters to a whole context, and all slots of a
model share one context and are decoded together in one batch, so one context cannot run
some sequences with the adapter and others without. Its own engine also keeps the two prompt
caches apart (KV computed with the adapter is wrong for the base, and the other way round).
The base GGUF is memory-mapped by both, so on CPU its weights' pages are shared by the OS; each
has its own KV cache.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from hearth.runtime.gguf_header import read_metadata
from hearth.runtime.settings import (
    DEFAULT_MODEL_ID,
    ModelEntry,
    ModelSettings,
    bundled_model_path,
)

log = logging.getLogger(__name__)

SPLIT_PART = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})$")
MANIFEST = "pulled.json"


@dataclass(frozen=True)
class ModelSpec:
    id: str
    source: str  # where it came from, as `hearth list` shows it
    path: Path | None  # None for a config model that is pulled on first use
    settings: ModelSettings
    hf: str | None = None  # "repo[:QUANT]" for such a model
    lora: Path | None = None  # a GGUF LoRA adapter applied on top of `path`
    lora_scale: float = 1.0
    pulled_as: str | None = None  # "repo[:QUANT]" for a model `hearth pull` fetched
    # Other names clients may send for it; glob patterns allowed ("claude-*").
    aliases: tuple[str, ...] = ()

    def answers_to(self, name: str) -> bool:
        """Whether `name` is one of the aliases, or matches one of their patterns."""
        return any(fnmatch.fnmatchcase(name, alias) for alias in self.aliases)

    @property
    def missing(self) -> bool:
        """A pulled model whose file is gone (someone cleaned the Hugging Face cache)."""
        return self.pulled_as is not None and self.path is not None and not self.path.is_file()

    @property
    def fetch_command(self) -> str | None:
        """The command that fetches a pulled model's file again."""
        return f"hearth pull {self.pulled_as}" if self.pulled_as else None


@dataclass(frozen=True)
class PulledModel:
    """One entry of pulled.json: what `hearth pull` fetched and where it lies."""

    id: str
    repo: str
    quant: str
    revision: str
    path: str  # the GGUF to load (the first part of a split one)
    files: list[str] = field(default_factory=list)  # every file `hearth rm` deletes
    converted: bool = False


def model_id_of(path: Path) -> str:
    """A GGUF's id: its file name without .gguf and without a split-part suffix."""
    stem = path.name.removesuffix(".gguf")
    split = SPLIT_PART.match(stem)
    return split.group("stem") if split else stem


def gguf_files(folder: Path) -> list[Path]:
    """The loadable GGUFs of a folder: whole files, and the first part of each split one."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.gguf")):
        split = SPLIT_PART.match(path.name.removesuffix(".gguf"))
        if split is None or int(split.group("part")) == 1:
            found.append(path)
    return found


@dataclass(frozen=True)
class GGUFFacts:
    """What a GGUF's header says, read without loading it (for listings and memory)."""

    architecture: str
    quant: str
    context_length: int | None
    has_chat_template: bool
    size_bytes: int  # on disk, every part of a split file
    kv_bytes_per_token: int  # f16 K and V over all layers, 0 when the header does not say


def gguf_facts(path: Path) -> GGUFFacts:
    """Raises NotGGUF (a ValueError) for a file that is not a readable GGUF."""
    import gguf

    meta = read_metadata(path)
    arch = str(meta.get("general.architecture") or "?")

    def number(key: str) -> int | None:
        found = meta.get(f"{arch}.{key}")
        return found if isinstance(found, int) else None

    try:
        quant = gguf.LlamaFileType(meta.get("general.file_type")).name.removeprefix("MOSTLY_")
    except (ValueError, TypeError):
        quant = "?"
    n_layer, n_embd, n_head = (
        number("block_count"),
        number("embedding_length"),
        number("attention.head_count"),
    )
    kv_per_token = 0
    if n_layer and n_embd and n_head:
        head_dim = number("attention.key_length") or n_embd // n_head
        kv_per_token = n_layer * 2 * head_dim * (number("attention.head_count_kv") or n_head) * 2
    split = SPLIT_PART.match(path.name.removesuffix(".gguf"))
    parts = (
        sorted(path.parent.glob(f"{split.group('stem')}-*-of-{split.group('count')}.gguf"))
        if split
        else [path]
    )
    return GGUFFacts(
        architecture=arch,
        quant=quant,
        context_length=number("context_length"),
        has_chat_template="tokenizer.chat_template" in meta,
        size_bytes=sum(part.stat().st_size for part in parts),
        kv_bytes_per_token=kv_per_token,
    )


class PulledManifest:
    """pulled.json, rewritten whole and atomically so an interrupted write loses nothing."""

    def __init__(self, library_dir: Path) -> None:
        self.path = library_dir / MANIFEST

    def entries(self) -> list[PulledModel]:
        if not self.path.is_file():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [PulledModel(**entry) for entry in data.get("models", [])]
        except (ValueError, TypeError) as broken:
            log.warning("ignoring %s: %s", self.path, broken)
            return []

    def find(self, model_id: str) -> PulledModel | None:
        return next((entry for entry in self.entries() if entry.id == model_id), None)

    def add(self, entry: PulledModel) -> None:
        self._write([e for e in self.entries() if e.id != entry.id] + [entry])

    def remove(self, model_id: str) -> None:
        self._write([e for e in self.entries() if e.id != model_id])

    def _write(self, entries: list[PulledModel]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"models": [asdict(e) for e in entries]}, indent=2)
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=".pulled-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
        os.replace(temp, self.path)


class ModelLibrary:
    def __init__(self, specs: list[ModelSpec]) -> None:
        if not specs:
            raise FileNotFoundError("no model to serve: none given, found or pulled")
        self.specs = specs

    @property
    def default(self) -> ModelSpec:
        """The first model whose file is there: a missing one must not stop the server."""
        return next((spec for spec in self.specs if not spec.missing), self.specs[0])

    def get(self, model_id: str) -> ModelSpec | None:
        return next((spec for spec in self.specs if spec.id == model_id), None)

    @classmethod
    def scan(cls, settings: ModelSettings) -> ModelLibrary:
        found: dict[str, ModelSpec] = {}

        def add(spec: ModelSpec) -> None:
            if spec.id in found:
                # A config model's pulled file that is gone stays in pulled.json under its id.
                if found[spec.id].path != spec.path and not spec.missing:
                    log.warning("model id %s found twice; keeping %s", spec.id, found[spec.id].path)
                return
            found[spec.id] = spec

        others = [*_configured(settings), *_in_models_dir(settings), *_pulled(settings)]
        others += _bundled(settings)
        first = _chosen(settings, others)
        chosen = ([first] if first else []) + others
        adapted = _with_lora(settings, next((s for s in chosen if not s.missing), None))
        for spec in ([adapted] if adapted else []) + chosen:
            add(spec)
        return cls(list(found.values()))


def _chosen(settings: ModelSettings, others: list[ModelSpec]) -> ModelSpec | None:
    """The model --model names (an id of the library, else a file), renamed by --alias,
    and answering to --aliases as well."""
    aliases = tuple(settings.alias_list())
    if not settings.model:
        present = [spec for spec in others if not spec.missing]
        if not (settings.alias or aliases) or not present:
            return None
        # --alias alone names the default model
        first = present[0]
        return replace(first, id=settings.alias or first.id, aliases=first.aliases + aliases)
    known = next((spec for spec in others if spec.id == settings.model), None)
    if known is not None and known.missing:  # asked for by name: serving another would mislead
        raise FileNotFoundError(
            f"model {known.id}: its file {known.path} is gone; "
            f"`{known.fetch_command}` fetches it again"
        )
    if known is not None:
        return replace(known, id=settings.alias or known.id, aliases=known.aliases + aliases)
    path = settings.model_file()  # FileNotFoundError with a one-line reason
    bundled = [spec for spec in others if spec.source == "bundled" and spec.path == path]
    name = settings.alias or (bundled[0].id if bundled else model_id_of(path))
    return ModelSpec(name, "--model", path, settings, aliases=aliases)


def _with_lora(settings: ModelSettings, base: ModelSpec | None) -> ModelSpec | None:
    """--lora: the default model with the adapter, as a model of its own."""
    if settings.lora is None:
        return None
    if base is None:
        raise FileNotFoundError(f"--lora {settings.lora} needs a base model; none was found")
    lora = settings.lora.expanduser()
    if not lora.is_file():
        raise FileNotFoundError(f"LoRA adapter not found: {settings.lora}")
    return replace(
        base,
        id=model_id_of(lora),
        source=f"{base.id} + LoRA {lora.name}",
        lora=lora,
        lora_scale=settings.lora_scale,
    )


def _configured(settings: ModelSettings) -> list[ModelSpec]:
    return [_from_entry(settings, entry) for entry in settings.models]


def _from_entry(settings: ModelSettings, entry: ModelEntry) -> ModelSpec:
    own = settings.model_copy(update=entry.overrides())
    lora = _in_models_dir_or_as_is(settings, entry.lora) if entry.lora else None
    scale = 1.0 if entry.lora_scale is None else entry.lora_scale
    extra = {"lora": lora, "lora_scale": scale, "aliases": tuple(entry.aliases)}
    if entry.hf is not None:
        pulled = PulledManifest(settings.library_dir).find(entry.id)
        # A pulled file that is gone is pulled again on first use, like one never pulled.
        path = Path(pulled.path) if pulled and Path(pulled.path).is_file() else None
        return ModelSpec(entry.id, "config", path, own, hf=entry.hf, **extra)
    path = _in_models_dir_or_as_is(settings, entry.path or "")
    return ModelSpec(entry.id, "config", path, own, **extra)


def _in_models_dir_or_as_is(settings: ModelSettings, name: str) -> Path:
    path = Path(name).expanduser()
    if not path.is_absolute() and not path.is_file() and (settings.models_dir / path).is_file():
        path = settings.models_dir / path
    return path


def _in_models_dir(settings: ModelSettings) -> list[ModelSpec]:
    return [
        ModelSpec(model_id_of(path), str(settings.models_dir), path, settings)
        for path in gguf_files(settings.models_dir)
        if not _is_adapter(path)
    ]


def _is_adapter(path: Path) -> bool:
    """A GGUF LoRA adapter is no model by itself: it is served through `lora`."""
    try:
        return read_metadata(path).get("general.type") == "adapter"
    except (OSError, ValueError):
        return False  # a broken file is the engine's to report


def _pulled(settings: ModelSettings) -> list[ModelSpec]:
    return [
        ModelSpec(
            entry.id,
            f"pulled from {entry.repo}",
            Path(entry.path),
            settings,
            pulled_as=entry.repo if entry.quant == "?" else f"{entry.repo}:{entry.quant}",
        )
        for entry in PulledManifest(settings.library_dir).entries()
    ]


def _bundled(settings: ModelSettings) -> list[ModelSpec]:
    try:
        path = bundled_model_path()
    except FileNotFoundError:
        return []
    return [ModelSpec(DEFAULT_MODEL_ID, "bundled", path, settings)] if path.is_file() else []
