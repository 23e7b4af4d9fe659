"""The JSONL metrics log: one JSON object per line, flushed as written, trimmed on resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only JSONL records with a ``step`` and a ``kind`` (``"train"``, ``"eval"``, ...).

    Args:
        path: the ``.jsonl`` file.
        resume_step: keep only the records of steps ``<= resume_step`` already in the file (a killed run
            may have logged past its last checkpoint, and may have left a torn last line); ``None``
            starts a new log.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [] if resume_step is None else [r for r in read_metrics(self.path) if r["step"] <= resume_step]
        with self.path.open("w") as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)
        self._file = self.path.open("a")

    def write(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Append one record and flush it."""
        self._file.write(json.dumps({"kind": kind, "step": step, **values}) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def read_metrics(path: str | Path, kind: str | None = None) -> list[dict[str, Any]]:
    """The records of a metrics log, skipping a torn (unparsable) line; only ``kind`` ones if given."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if kind is None or record.get("kind") == kind:
            records.append(record)
    return records
