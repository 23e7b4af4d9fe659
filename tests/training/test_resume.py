"""Kill a training process with SIGKILL, resume it, and get the uninterrupted run's loss curve."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pairsim.models import read_state
from pairsim.training.metrics_log import read_metrics

WORKER = Path(__file__).with_name("resume_worker.py")
STEPS = 80


#: The exact path and each speed setting.
SETTINGS = {
    "exact": ["precision=fp32", "channels_last=false", "compile=false"],
    "channels-last": ["precision=fp32", "channels_last=true", "compile=false"],
    "bf16": ["precision=bf16", "channels_last=true", "compile=false"],
    "compiled": ["precision=fp32", "channels_last=true", "compile=true"],
}
# Each of the three processes of a compiled run compiles the model first (tens of seconds): in CI only.
PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name == "compiled" else name for name in SETTINGS]


def start(out_dir: Path, settings: list[str], resume: bool = False) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(WORKER), str(out_dir), str(STEPS), *settings] + (["--resume"] if resume else [])
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def curve(out_dir: Path, kind: str, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in read_metrics(out_dir / "metrics.jsonl", kind)]


@pytest.mark.parametrize("setting", PARAMS)
def test_sigkilled_run_resumes_to_the_uninterrupted_curve(tmp_path: Path, setting: str) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    run = start(killed, SETTINGS[setting])
    deadline = time.monotonic() + 240  # a compiled run compiles first
    while time.monotonic() < deadline and run.poll() is None:
        if (killed / "last.pt").exists() and len(curve(killed, "train", "loss")) >= 10:
            break
        time.sleep(0.02)
    assert run.poll() is None, "the run ended before it could be killed"
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    interrupted_at = read_state(killed / "last.pt")["step"]
    assert 0 < interrupted_at < STEPS

    for proc in (start(killed, SETTINGS[setting], resume=True), start(reference, SETTINGS[setting])):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()

    # Exact equality: same batches, same jitter (RNG restored), same optimizer state.
    assert curve(killed, "train", "loss") == curve(reference, "train", "loss")
    assert [s for s, _ in curve(killed, "train", "loss")] == list(range(1, STEPS + 1))
    assert curve(killed, "eval", "precision_at_1") == curve(reference, "eval", "precision_at_1")
    assert read_state(killed / "last.pt")["step"] == STEPS
