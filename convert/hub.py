"""`hearth convert OWNER/NAME`: fetch from Hugging Face only the files a conversion reads.

A Hub repository usually holds more than the converter needs: the same weights again as
`pytorch_model.bin`, `flax_model.msgpack`, `tf_model.h5` or ONNX exports, GGUFs, a
`consolidated.safetensors` beside the Hugging Face shards, images for the model card. So the
repository's file list is read first and exactly the files of one weight layout (the first of
safetensors, PyTorch `.bin`, Meta `.pth`, PEFT adapter that the repository has), its config and
its tokenizer files are downloaded; nothing else. The downloads are huggingface-hub's
`hf_hub_download`: its cache (HF_HOME), progress bars, resumed downloads, HF_TOKEN,
HF_ENDPOINT and HF_HUB_OFFLINE behave as that library documents. With HF_HUB_OFFLINE=1 the
cached snapshot is used when there is one.

Every Hub failure becomes one line (`hub_failure`), shared with `hearth pull`.
"""

from __future__ import annotations

import errno
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path

from hearth.convert.checkpoint import HF_FORMATS, WeightFormat
from hearth.convert.errors import ConversionError

REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")

# Beside the weights: what open_checkpoint, the vocabulary and gguf-py's SpecialVocab read.
CONFIG_FILES = ("config.json", "params.json", "adapter_config.json")
TOKENIZER_FILES = (
    "tokenizer.model",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
)
META_WEIGHTS = ("consolidated.*.pth",)
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class FetchedCheckpoint:
    folder: Path  # the snapshot in huggingface-hub's cache
    name: str  # the repository's name, for the GGUF's general.name and its default file name
    files: tuple[str, ...]  # what was asked for


def is_repo_id(text: str) -> bool:
    return REPO_ID.match(text) is not None


def _format_patterns(weight_format: WeightFormat) -> tuple[str, ...]:
    shards = f"{weight_format.shard_prefix}-*-of-*{weight_format.shard_suffix}"
    return (weight_format.single, weight_format.index, shards)


WEIGHT_LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    *((f.describe, _format_patterns(f)) for f in HF_FORMATS),
    ("Meta consolidated.*.pth", META_WEIGHTS),
    ("PEFT adapter", ADAPTER_WEIGHTS),
)


def _matching(names: list[str], patterns: tuple[str, ...]) -> list[str]:
    return [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


def files_to_fetch(repo: str, names: list[str]) -> list[str]:
    """The repository files a conversion reads: one weight layout, config and tokenizer.

    Only top-level files count: a Hub repository's subfolders (`original/`, `onnx/`) hold
    other copies of the model, not parts of this one.
    """
    top = sorted(n for n in names if "/" not in n)
    for _, patterns in WEIGHT_LAYOUTS:
        weights = _matching(top, patterns)
        if weights:
            extras = [n for n in top if n in CONFIG_FILES or n in TOKENIZER_FILES]
            return sorted(set(weights) | set(extras))
    ggufs = [n for n in top if n.endswith(".gguf")]
    hint = f"; it has GGUF files, which `hearth pull {repo}` serves as they are" if ggufs else ""
    readable = ", ".join(describe for describe, _ in WEIGHT_LAYOUTS)
    raise ConversionError(f"{repo} has no weights hearth convert reads ({readable}){hint}")


def fetch_checkpoint(repo: str, revision: str | None = None) -> FetchedCheckpoint:
    """Download what converting `repo` needs into the hub cache; ConversionError on failure."""
    from huggingface_hub import constants

    try:
        if constants.HF_HUB_OFFLINE:
            return _cached(repo, revision)
        return _download(repo, revision)
    except ConversionError:
        raise
    except Exception as error:
        message = hub_failure(error, repo)
        if message is None:
            raise
        raise ConversionError(message) from None


def fetch_base_config(repo: str) -> Path:
    """A LoRA adapter's base model, as far as converting the adapter needs it: the folder of
    its config.json (no weights). ConversionError on failure."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, "config.json")).parent
    except Exception as error:
        message = hub_failure(error, repo)
        if message is None:
            raise
        raise ConversionError(f"the adapter's base model: {message}") from None


def _download(repo: str, revision: str | None) -> FetchedCheckpoint:
    from huggingface_hub import HfApi

    info = HfApi().model_info(repo, revision=revision)
    files = files_to_fetch(repo, [s.rfilename for s in info.siblings or []])
    return FetchedCheckpoint(_fetch_each(repo, files, revision), repo.split("/")[1], tuple(files))


def _fetch_each(repo: str, files: list[str], revision: str | None) -> Path:
    """Each file by hf_hub_download, one after the other, in this thread.

    Not snapshot_download: it downloads in worker threads, and Python waits for those at exit,
    so Ctrl-C or SIGTERM would hang until the whole download ended (or timed out) instead of
    stopping it. The revision is passed by the name asked, so the cache records the branch's
    commit, which is what an offline run later looks the files up by.
    """
    from huggingface_hub import hf_hub_download

    local = [Path(hf_hub_download(repo, name, revision=revision)) for name in files]
    return local[0].parent  # top-level files: all in the snapshot's folder


def _cached(repo: str, revision: str | None) -> FetchedCheckpoint:
    """Offline: the files an earlier download left in the cache (LocalEntryNotFoundError from
    huggingface-hub when a needed one is not there)."""
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError

    found = (try_to_load_from_cache(repo, name, revision=revision) for name in CONFIG_FILES)
    config = next((Path(path) for path in found if isinstance(path, str)), None)
    if config is None:
        raise LocalEntryNotFoundError(f"{repo} is not in the cache")
    files = files_to_fetch(repo, [p.name for p in config.parent.iterdir() if p.is_file()])
    return FetchedCheckpoint(_fetch_each(repo, files, revision), repo.split("/")[1], tuple(files))


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The connection errors of whichever HTTP client this huggingface-hub uses (httpx up to
    1.x, its fork httpx2 since 2.0)."""
    import importlib

    found: list[type[BaseException]] = [ConnectionError]
    for name in ("httpx", "httpx2"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def hub_failure(error: BaseException, repo: str, asked: str | None = None) -> str | None:
    """One line for a huggingface-hub or disk failure while fetching `repo` (`asked` is what
    the user typed, when it says more, such as a quant tag); None for anything else."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hub

    asked = asked or repo
    if isinstance(error, hub.GatedRepoError):
        return f"{repo} is gated: accept its terms on the Hub and set HF_TOKEN"
    if isinstance(error, hub.RepositoryNotFoundError):
        return f"repository not found: {repo} (or it is private: set HF_TOKEN)"
    if isinstance(error, hub.RevisionNotFoundError):
        return f"{repo} has no such revision"
    if isinstance(error, hub.OfflineModeIsEnabled) or (
        isinstance(error, hub.LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE
    ):
        return f"offline mode (HF_HUB_OFFLINE) is on and {asked} is not in the local cache"
    if isinstance(error, (*_transport_errors(), hub.LocalEntryNotFoundError)):
        return f"cannot reach {constants.ENDPOINT} to fetch {repo}: no network?"
    if isinstance(error, hub.HfHubHTTPError):
        return f"the Hub refused {repo}: {str(error).splitlines()[0]}"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"the disk is full while fetching {repo} (its cache: {constants.HF_HUB_CACHE})"
    return None
