"""`hearth pull`, `list` and `rm` with the real huggingface-hub client against the loopback Hub."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import httpx
import openai
import pytest
from conftest import GGUF_REPO, SPLIT_REPO, Library, assert_one_line_failure

from tests.conftest import free_port, start_server


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pulled(library: Library) -> dict[str, dict]:
    if not library.manifest.is_file():
        return {}
    return {entry["id"]: entry for entry in json.loads(library.manifest.read_text())["models"]}


def test_pull_without_a_tag_takes_q4_k_m_and_lists_it(library, hub_files):
    result = library.hearth("pull", GGUF_REPO)
    assert result.returncode == 0, result.stderr
    entry = pulled(library)["SmolLM2-135M-Instruct-Q4_K_M"]
    assert entry["repo"] == GGUF_REPO and entry["quant"] == "Q4_K_M"
    assert sha256(Path(entry["path"])) == sha256(hub_files["gguf"])
    assert str(library.root / "hf") in entry["path"]  # in huggingface-hub's own cache
    listing = library.hearth("list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "Q4_K_M" in line.split()[0])
    assert "llama" in row and "Q4_1" in row and "pulled from" in row  # quant read from the file


def test_quant_tag_is_case_insensitive(library):
    assert library.hearth("pull", f"{GGUF_REPO}:q4_1").returncode == 0
    assert list(pulled(library)) == ["SmolLM2-135M-Instruct-Q4_1"]


def test_missing_quant_lists_what_exists(library):
    result = library.hearth("pull", f"{GGUF_REPO}:Q8_0")
    assert_one_line_failure(
        result, "no Q8_0 GGUF", "SmolLM2-135M-Instruct-Q4_1", "SmolLM2-135M-Instruct-Q4_K_M"
    )
    assert pulled(library) == {}


def test_several_ggufs_and_no_q4_k_m_stop_and_list_the_choices(library):
    result = library.hearth("pull", SPLIT_REPO)
    assert_one_line_failure(result, "pick one of", "big-Q4_0", "big-Q8_0")


def test_split_gguf_is_pulled_as_one_model(library, hub_files):
    assert library.hearth("pull", f"{SPLIT_REPO}:Q8_0").returncode == 0
    entry = pulled(library)["big-Q8_0"]
    assert len(entry["files"]) == 2 and entry["path"].endswith("-00001-of-00002.gguf")
    assert [sha256(Path(f)) for f in entry["files"]] == [
        sha256(hub_files["part1"]),
        sha256(hub_files["part2"]),
    ]


def test_missing_repository_is_one_line(library):
    assert_one_line_failure(
        library.hearth("pull", "test/no-such-model"), "repository not found", "test/no-such-model"
    )


def test_no_network_is_one_line(library):
    result = library.hearth("pull", GGUF_REPO, HF_ENDPOINT="http://127.0.0.1:9")
    assert_one_line_failure(result, "cannot reach")


def test_offline_mode_is_honoured(library):
    result = library.hearth("pull", GGUF_REPO, HF_HUB_OFFLINE="1")
    assert_one_line_failure(result, "offline mode")


def test_not_a_repository_id_is_one_line(library):
    assert_one_line_failure(library.hearth("pull", "just-a-name"), "not a repository id")


def test_interrupted_pull_leaves_nothing_half_written(library, hub):
    fake, _ = hub
    fake.stall.add("SmolLM2-135M-Instruct-Q4_K_M.gguf")
    status, _ = library.interrupt_when_stalled(fake, "pull", GGUF_REPO)
    assert status != 0
    assert pulled(library) == {}
    assert "Q4_K_M" not in library.hearth("list").stdout
    # huggingface-hub 2.x downloads into a file unique to the process and deletes it on
    # failure: nothing partial stays in its cache either.
    cache = library.root / "hf"
    assert [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size > 10_000] == []


def test_interrupting_the_pull_of_a_checkpoint_stops_at_once(library, hub, tmp_path_factory):
    """Ctrl-C did not stop `hearth pull` of a safetensors repository: snapshot_download's
    worker thread kept waiting on the stalled download and the process would not exit."""
    fake, _ = hub
    fake.add("test/tiny-llama", tiny_checkpoint(tmp_path_factory))
    fake.stall.add("model.safetensors")
    # No read timeout: the stall lasts until the test ends, as a dead connection can.
    status, output = library.interrupt_when_stalled(
        fake, "pull", "test/tiny-llama:q8_0", HF_HUB_DOWNLOAD_TIMEOUT="600"
    )
    assert status != 0
    assert b"Traceback" not in output, output.decode(errors="replace")
    assert pulled(library) == {}
    assert list((library.root / "data").rglob("*.gguf")) == []
    cache = library.root / "hf"
    assert [p for p in cache.rglob("*") if p.is_file() and p.stat().st_size > 10_000] == []


def test_dropped_connection_resumes_where_it_stopped(library, hub, hub_files):
    fake, _ = hub
    name = "SmolLM2-135M-Instruct-Q4_K_M.gguf"
    fake.drop_once.add(name)
    result = library.hearth("pull", GGUF_REPO)
    assert result.returncode == 0, result.stderr
    asked = [r for f, r in fake.ranges if f == name]
    half = hub_files["gguf"].stat().st_size // 2
    assert len(asked) == 2 and asked[0] == "", fake.ranges
    resumed_at = int(asked[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= half  # from what it had written, not from the start
    entry = pulled(library)["SmolLM2-135M-Instruct-Q4_K_M"]
    assert sha256(Path(entry["path"])) == sha256(hub_files["gguf"])


def test_rm_says_what_it_removes_and_frees_the_files(library):
    assert library.hearth("pull", GGUF_REPO).returncode == 0
    entry = pulled(library)["SmolLM2-135M-Instruct-Q4_K_M"]
    blob = Path(entry["path"]).resolve()
    result = library.hearth("rm", "SmolLM2-135M-Instruct-Q4_K_M")
    assert result.returncode == 0, result.stderr
    assert "removing" in result.stdout and entry["path"] in result.stdout
    assert not Path(entry["path"]).exists() and not blob.exists()
    assert pulled(library) == {}
    assert_one_line_failure(
        library.hearth("rm", "SmolLM2-135M-Instruct-Q4_K_M"), "not a pulled model"
    )


def tiny_checkpoint(tmp_path_factory) -> dict[str, Path]:
    """A real tiny Llama checkpoint (tests/convert's builders), as a repository's files."""
    sys.path.insert(0, str(Path(__file__).parent.parent / "convert"))
    from checkpoint_builders import build_tiny, train_tokenizer

    root = tmp_path_factory.mktemp("tiny-hub")
    spm = train_tokenizer(root / "spm")
    folder = build_tiny("llama", root / "tiny", spm, 320)
    return {p.name: p for p in folder.iterdir() if p.is_file()}


def test_checkpoint_repository_is_converted_once(library, hub, tmp_path_factory):
    fake, _ = hub
    fake.add("test/tiny-llama", tiny_checkpoint(tmp_path_factory))
    first = library.hearth("pull", "test/tiny-llama:q8_0")
    assert first.returncode == 0, first.stderr
    entry = pulled(library)["tiny-llama-Q8_0"]
    assert entry["converted"] and Path(entry["path"]).is_file()
    assert "converting" in first.stderr
    listing = library.hearth("list").stdout
    assert any(
        line.startswith("tiny-llama-Q8_0") and "Q8_0" in line and "llama" in line
        for line in listing.splitlines()
    ), listing
    again = library.hearth("pull", "test/tiny-llama:q8_0")
    assert again.returncode == 0 and "converting" not in again.stderr


def test_config_model_is_pulled_on_first_use_and_served(library, tmp_path):
    config = tmp_path / "hearth.toml"
    config.write_text(
        '[[models]]\nid = "remote"\nhf = "test/SmolLM2-135M-Instruct-GGUF:Q4_1"\n'
        "n_ctx = 1024\ntemperature = 0.0\n"
    )
    server = start_server(tmp_path, "--config", str(config), "--model", "smollm2", env=library.env)
    try:
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        cards = {card.id: card for card in client.models.list().data}
        assert cards["remote"].model_extra["state"] == "unloaded"
        assert pulled(library) == {}
        reply = client.chat.completions.create(
            model="remote", messages=[{"role": "user", "content": "Hi"}], max_tokens=8
        )
        assert reply.model == "remote" and reply.choices[0].message.content
        assert "remote" in pulled(library)
        card = client.models.retrieve("remote")
        assert card.model_extra["context_length"] == 1024 and card.model_extra["loaded"]
    finally:
        server.stop()


def test_pulled_model_whose_file_vanished_is_reported_not_fatal(library, tmp_path):
    """A pulled model whose file was cleaned from the HF cache stopped `hearth serve` at start
    ("model file not found") and showed in `hearth list` as "None (pulled on first use)"."""
    assert library.hearth("pull", GGUF_REPO).returncode == 0
    gone = "SmolLM2-135M-Instruct-Q4_K_M"  # the first of the library: the default model
    shutil.rmtree(library.root / "hf" / "hub")  # someone cleaned the Hugging Face cache
    fetch = f"hearth pull {GGUF_REPO}:Q4_K_M"

    listing = library.hearth("list")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith(gone))
    assert "missing" in row and fetch in row and "None" not in row, row

    asked = library.hearth("serve", "--model", gone, "--port", str(free_port()))
    assert_one_line_failure(asked, gone, fetch)  # named on purpose: no other model instead

    server = start_server(tmp_path, env=library.env)
    try:
        warnings = [
            line
            for line in server.log().splitlines()
            if line.startswith("WARNING") and gone in line
        ]
        assert len(warnings) == 1 and fetch in warnings[0], server.log()
        assert "smollm2" in warnings[0] and "default" in warnings[0], warnings[0]
        assert httpx.get(f"{server.url}/health").json()["default_model"] == "smollm2"
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        assert client.models.retrieve(gone).model_extra["state"] == "missing"
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(
                model=gone, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
            )
        assert refused.value.code == "model_file_missing", refused.value
        assert fetch in refused.value.message and refused.value.param == "model"
        reply = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert reply.choices[0].message.content
    finally:
        server.stop()


def test_config_model_whose_pulled_file_vanished_is_pulled_again_on_first_use(library, tmp_path):
    """A config model's pulled file that was cleaned from the HF cache stayed recorded as its
    file, so its first use failed to load it instead of pulling it again."""
    config = tmp_path / "hearth.toml"
    config.write_text(f'[[models]]\nid = "remote"\nhf = "{GGUF_REPO}:Q4_1"\n')
    assert library.hearth("pull", f"{GGUF_REPO}:Q4_1").returncode == 0
    pulled_entry = pulled(library)["SmolLM2-135M-Instruct-Q4_1"]
    library.manifest.write_text(json.dumps({"models": [{**pulled_entry, "id": "remote"}]}))
    shutil.rmtree(library.root / "hf" / "hub")
    listing = library.hearth("list", "--config", str(config))
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if line.startswith("remote"))
    assert f"{GGUF_REPO}:Q4_1 (pulled on first use)" in row, row
    assert "found twice" not in listing.stderr, listing.stderr
    server = start_server(tmp_path, "--config", str(config), "--model", "smollm2", env=library.env)
    try:
        client = openai.OpenAI(base_url=server.api, api_key="none", timeout=300)
        reply = client.chat.completions.create(
            model="remote", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        assert reply.model == "remote" and reply.choices[0].message.content
        assert Path(pulled(library)["remote"]["path"]).is_file()
    finally:
        server.stop()
