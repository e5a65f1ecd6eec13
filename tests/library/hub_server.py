"""A loopback stand-in for the Hugging Face Hub's file API, for the real huggingface-hub client.

It answers what `HfApi.model_info`, `list_repo_tree`, `hf_hub_download` and
`snapshot_download` ask (set through HF_ENDPOINT): repository info with its files, the file
tree, and `resolve/` with X-Repo-Commit, ETag, Content-Length and Range. A file may be set to
stall half-way, so a test can interrupt a download and watch the next one resume.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
INFO = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")
TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?P<path>/.*)?$")
CHUNK = 1 << 20


@dataclass
class HubFile:
    source: Path

    @property
    def size(self) -> int:
        return self.source.stat().st_size

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with self.source.open("rb") as data:
            while block := data.read(CHUNK):
                digest.update(block)
        return digest.hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    stall: set[str] = field(default_factory=set)  # files whose body stops half-way
    drop_once: set[str] = field(default_factory=set)  # files whose next body is cut half-way
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    ranges: list[tuple[str, str]] = field(default_factory=list)  # (file, Range) of each GET
    _hashes: dict[Path, str] = field(default_factory=dict)

    def add(self, repo: str, files: dict[str, Path]) -> None:
        self.repos[repo] = {name: HubFile(path) for name, path in files.items()}

    def etag(self, file: HubFile) -> str:
        if file.source not in self._hashes:
            self._hashes[file.source] = file.sha256()
        return self._hashes[file.source]


def serve(hub: FakeHub) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: object) -> None:
            pass

        def do_HEAD(self) -> None:
            self._resolve(body=False)

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if (match := INFO.match(path)) is not None:
                return self._info(match["repo"])
            if (match := TREE.match(path)) is not None:
                return self._tree(match["repo"])
            return self._resolve(body=True)

        def _missing(self) -> None:
            self._json({"error": "Repository not found"}, 404, {"X-Error-Code": "RepoNotFound"})

        def _json(
            self, payload: object, status: int = 200, headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _info(self, repo: str) -> None:
            files = hub.repos.get(repo)
            if files is None:
                return self._missing()
            self._json(
                {
                    "id": repo,
                    "modelId": repo,
                    "sha": COMMIT,
                    "private": False,
                    "siblings": [{"rfilename": name} for name in files],
                }
            )

        def _tree(self, repo: str) -> None:
            files = hub.repos.get(repo)
            if files is None:
                return self._missing()
            self._json(
                [
                    {
                        "type": "file",
                        "oid": hub.etag(f)[:40],
                        "size": f.size,
                        "path": name,
                        "lfs": {"oid": hub.etag(f), "size": f.size, "pointerSize": 134},
                    }
                    for name, f in files.items()
                ]
            )

        def _resolve(self, body: bool) -> None:
            match = RESOLVE.match(self.path.split("?")[0])
            files = hub.repos.get(match["repo"]) if match else None
            if match is None or files is None:
                return self._missing()
            file = files.get(match["file"])
            if file is None:
                return self._json(
                    {"error": "Entry not found"},
                    404,
                    {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT},
                )
            start = 0
            wanted = self.headers.get("Range")
            if body:
                hub.ranges.append((match["file"], wanted or ""))
            if wanted and (found := re.match(r"bytes=(\d+)-", wanted)):
                start = int(found.group(1))
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hub.etag(file)}"')
            self.send_header("Content-Length", str(file.size - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{file.size - 1}/{file.size}")
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if body:
                drop = match["file"] in hub.drop_once
                hub.drop_once.discard(match["file"])
                self._send(file, start, stall=match["file"] in hub.stall, drop=drop)

        def _send(self, file: HubFile, start: int, stall: bool, drop: bool) -> None:
            half = file.size // 2
            with file.source.open("rb") as data:
                data.seek(start)
                sent = start
                while block := data.read(CHUNK):
                    if (stall or drop) and sent + len(block) > half:
                        self.wfile.write(block[: half - sent])
                        self.wfile.flush()
                        if stall:
                            hub.stalled.set()
                            hub.release.wait(timeout=120)
                        self.close_connection = True
                        return
                    self.wfile.write(block)
                    sent += len(block)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
