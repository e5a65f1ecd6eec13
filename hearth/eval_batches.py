"""The batches a `hearth eval` submitted, kept next to its output so a re-run takes them up.

The batches themselves outlive anything (they run on the server, in its store); what a
killed eval loses is which batches were its own. So each batch id is written down as soon
as the server has it, keyed by a hash of the batch's lines: the same arguments on the same
questions make the same answering lines, and the same answers make the same judging lines,
so a re-run finds its batches by what it would have submitted, and any change (a model, a
question, a system prompt) makes new lines and so a new batch. The file goes once the
eval's output is written.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def lines_key(lines: list[dict]) -> str:
    canonical = json.dumps(lines, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class SubmittedBatches:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._ids: dict[str, str] = {}
        if path.exists():
            try:
                found = json.loads(path.read_text(encoding="utf-8")).get("batches", {})
            except (ValueError, AttributeError):
                found = {}  # a file cut short by the kill it is there for: start over
            self._ids = {k: v for k, v in found.items() if isinstance(v, str)}

    @classmethod
    def beside(cls, output: Path) -> SubmittedBatches:
        return cls(output.with_name(output.name + ".batches.json"))

    def get(self, lines: list[dict]) -> str | None:
        return self._ids.get(lines_key(lines))

    def add(self, lines: list[dict], batch_id: str) -> None:
        """Write the id down at once, atomically: the eval may be killed right after."""
        self._ids[lines_key(lines)] = batch_id
        partial = self.path.with_name(self.path.name + ".part")
        partial.write_text(json.dumps({"batches": self._ids}), encoding="utf-8")
        os.replace(partial, self.path)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)
