"""Atomic checkpoint writes and the JSONL log's trimming on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pairsim.models import read_state, save_state
from pairsim.training.metrics_log import MetricsLog, read_metrics


class Unpicklable:
    def __reduce__(self) -> tuple[object, ...]:
        raise RuntimeError("cannot pickle")


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    save_state({"step": 1, "w": torch.ones(3)}, path)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_state({"step": 2, "bad": Unpicklable()}, path)
    assert read_state(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left behind


def test_save_replaces_and_creates_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ckpt.pt"
    save_state({"step": 1}, path)
    save_state({"step": 2}, path)
    assert read_state(path)["step"] == 2


def test_resumed_log_drops_records_after_the_checkpoint_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in range(1, 6):
        log.write("train", step, {"loss": float(step)})
    log.close()
    with path.open("a") as f:
        f.write('{"kind": "train", "st')  # a write cut short by SIGKILL
    log = MetricsLog(path, resume_step=3)
    log.write("train", 4, {"loss": 40.0})
    log.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(path)] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]
    assert read_metrics(path, "eval") == []
    assert MetricsLog(path).path == path and read_metrics(path) == []  # a new run starts a new log
