"""`hearth pull REPO[:QUANT]`: fetch a GGUF (or a checkpoint to convert) from Hugging Face.

Downloads go through huggingface-hub, so its cache, progress bars, resumed downloads,
HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE behave as that library documents. A file is
recorded in the library (pulled.json) only once it is complete: an interrupted pull leaves
the hub's own `.incomplete` blob, which the next pull resumes, and nothing among the models.

Which GGUF: the one whose name carries the asked quant tag (case-insensitive), a split GGUF
(`-00001-of-0000N`) being one model; without a tag, Q4_K_M where the repository has it, the
only GGUF where there is one, else the pull stops and lists the choices. A repository with
safetensors and no GGUF is converted with `hearth convert` to the asked quant (Q4_K_M by
default), once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from hearth.runtime.library import ModelSpec, PulledManifest, PulledModel, model_id_of
from hearth.runtime.settings import ModelSettings

log = logging.getLogger(__name__)

DEFAULT_QUANT = "Q4_K_M"


class PullError(Exception):
    """A pull that cannot go on; the message is one line for the user."""


@dataclass(frozen=True)
class ModelRef:
    repo: str
    quant: str | None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        repo, _, quant = text.strip().partition(":")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise PullError(f"{text!r} is not a repository id (owner/name[:QUANT])")
        return cls(repo, quant or None)

    def __str__(self) -> str:
        return f"{self.repo}:{self.quant}" if self.quant else self.repo


def quant_pattern(quant: str) -> re.Pattern[str]:
    """`Q4_K_M` in `model-Q4_K_M.gguf` or `model.q4_k_m-00001-of-00002.gguf`, but not in
    `model-Q4_K_M_L.gguf` or `IQ4_K_M`."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(quant)}(?![A-Za-z0-9])", re.IGNORECASE)


def group_ggufs(names: list[str]) -> dict[str, list[str]]:
    """Repository GGUF files by model id: a split GGUF's parts form one model."""
    groups: dict[str, list[str]] = {}
    for name in sorted(names):
        if name.endswith(".gguf"):
            groups.setdefault(model_id_of(Path(name)), []).append(name)
    return groups


def choose_gguf(ref: ModelRef, names: list[str]) -> list[str]:
    """The files of the one GGUF model `ref` asks for, or PullError listing the choices."""
    groups = group_ggufs(names)
    choices = ", ".join(sorted(Path(g).name for g in groups)) or "none"
    if ref.quant:
        matching = [g for g in groups if quant_pattern(ref.quant).search(Path(g).name)]
        if not matching:
            raise PullError(f"{ref.repo} has no {ref.quant} GGUF; it has: {choices}")
    else:
        matching = [g for g in groups if quant_pattern(DEFAULT_QUANT).search(Path(g).name)]
        if not matching and len(groups) == 1:
            matching = list(groups)
    if len(matching) != 1:
        raise PullError(f"{ref} matches {len(matching)} GGUF models; pick one of: {choices}")
    return groups[matching[0]]


def pull(text: str, settings: ModelSettings) -> PulledModel:
    """Fetch `repo[:QUANT]` into the library and record it; returns the library entry."""
    ref = ModelRef.parse(text)
    with hub_errors(ref):
        return _pull(ref, settings)


def pull_for_config(spec: ModelSpec, settings: ModelSettings) -> str:
    """A config model's `hf` repo, pulled on its first use; the path to load."""
    assert spec.hf is not None
    entry = pull(spec.hf, settings)
    if entry.id != spec.id:  # the config names it; record it under that id too
        PulledManifest(settings.library_dir).add(replace(entry, id=spec.id))
    return entry.path


def _pull(ref: ModelRef, settings: ModelSettings) -> PulledModel:
    from huggingface_hub import HfApi, hf_hub_download

    info = HfApi().model_info(ref.repo)
    names = [sibling.rfilename for sibling in info.siblings or []]
    revision = info.sha or "main"
    if any(name.endswith(".gguf") for name in names):
        files = choose_gguf(ref, names)
        local = [hf_hub_download(ref.repo, name, revision=revision) for name in files]
        quant = ref.quant or _quant_of(files[0])
        entry = PulledModel(
            id=model_id_of(Path(files[0])),
            repo=ref.repo,
            quant=quant,
            revision=revision,
            path=local[0],
            files=local,
        )
    elif "adapter_config.json" in names:
        raise PullError(
            f"{ref.repo} is a LoRA adapter, not a model: `hearth convert {ref.repo}` "
            "makes its GGUF, which `hearth serve --lora` serves on its base"
        )
    elif any(name.endswith(".safetensors") for name in names):
        entry = _pull_and_convert(ref, revision, settings)
    else:
        raise PullError(f"{ref.repo} has neither GGUF nor safetensors files")
    PulledManifest(settings.library_dir).add(entry)
    return entry


def _quant_of(name: str) -> str:
    from hearth.convert.quantize import OUT_TYPES

    for out_type in OUT_TYPES:
        if quant_pattern(out_type).search(Path(name).name):
            return out_type.upper()
    return "?"


def _pull_and_convert(ref: ModelRef, revision: str, settings: ModelSettings) -> PulledModel:
    from hearth.convert.converter import convert_checkpoint
    from hearth.convert.hub import fetch_checkpoint
    from hearth.convert.quantize import OUT_TYPES

    quant = (ref.quant or DEFAULT_QUANT).lower()
    out_type = OUT_TYPES.get(quant)
    if out_type is None:
        raise PullError(
            f"cannot convert to {ref.quant}; choose one of: "
            f"{', '.join(t.upper() for t in OUT_TYPES)}"
        )
    # `hearth convert`'s fetch (the weights once, config, tokenizer), not snapshot_download:
    # that one downloads in worker threads, which Ctrl-C does not stop, so a stalled
    # download kept the pull from exiting until huggingface-hub gave up on it.
    folder = fetch_checkpoint(ref.repo, revision).folder
    name = ref.repo.split("/")[1]
    model_id = f"{name}-{quant.upper()}"
    output = settings.library_dir / "converted" / f"{model_id}.gguf"
    output.parent.mkdir(parents=True, exist_ok=True)
    if not output.is_file():  # converted once; convert_checkpoint writes it whole or not at all
        log.info("%s has no GGUF: converting its checkpoint to %s", ref.repo, quant.upper())
        convert_checkpoint(folder, output, out_type, name=name)
    return PulledModel(
        id=model_id,
        repo=ref.repo,
        quant=quant.upper(),
        revision=revision,
        path=str(output),
        files=[str(output)],
        converted=True,
    )


@contextmanager
def hub_errors(ref: ModelRef) -> Iterator[None]:
    """Turns the hub's and the disk's failures into one-line PullErrors."""
    try:
        yield
    except PullError:
        raise
    except Exception as error:
        message = _hub_message(ref, error)
        if message is None:
            raise
        raise PullError(message) from None


def _hub_message(ref: ModelRef, error: BaseException) -> str | None:
    from hearth.convert.hub import hub_failure

    return hub_failure(error, ref.repo, str(ref))
