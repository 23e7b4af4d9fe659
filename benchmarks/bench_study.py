"""Study benchmark: trials per hour of a quick preset, the machinery's overhead, and 2 workers on PostgreSQL.

Runs the search phase of ``configs/studies/hangul-quick.yaml`` (small CNN, 32 px) for ``--losses`` with
``--trials`` trials each and no pruning (so every trial trains its full budget), three ways in the same
run, on the same prebuilt data cache:

- ``sqlite-1``: one worker on the default SQLite storage;
- ``postgres-2``: two worker processes on a throw-away PostgreSQL server (tests/jobs/postgres.py);

and reports for each: wall time, trials per hour, the trainer's own time summed over runs (``Trainer.run``'s
loop, evaluations included, from the trials' ``train_seconds_*``), and the overhead: the share of the
workers' time spent outside the trainer (process start, data loading from the cache, model construction,
Optuna's sampling and storage, checkpoint clean-up).

    python benchmarks/bench_study.py                      # circle, triplet x 3 trials, 50 steps a run
    python benchmarks/bench_study.py --losses circle triplet cosface --trials 6 --steps 300

Results go to ``benchmarks/results/bench_study.{json,md}`` with the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/jobs/postgres.py starts the server

from tests.jobs.postgres import postgres_server  # noqa: E402

from pairsim.jobs.study import loss_study, open_storage  # noqa: E402
from pairsim.jobs.study_config import load_study_config  # noqa: E402
from pairsim.jobs.study_runs import run_config  # noqa: E402
from pairsim.training.run import load_split  # noqa: E402

PRESET = ROOT / "configs" / "studies" / "hangul-quick.yaml"


def study_file(directory: Path, losses: list[str], trials: int, steps: int) -> Path:
    raw = yaml.safe_load(PRESET.read_text())
    base = str((PRESET.parent / raw["base"]).resolve())
    raw.update(losses=losses, trials=trials, steps=steps, pruner="none", base=base)
    raw["out_dir"] = str(directory / "out")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def run(path: Path, workers: int, storage: str | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "pairsim", "study", "worker", str(path)]
    command += ["--storage", storage] if storage else []
    started = time.perf_counter()
    processes = [subprocess.Popen([*command, "--worker-id", str(i)], stdout=subprocess.DEVNULL) for i in range(workers)]
    codes = [p.wait() for p in processes]
    wall = time.perf_counter() - started
    if any(codes):
        raise SystemExit(f"workers failed: {codes}")
    config = load_study_config(path)
    db = open_storage(config, storage)
    trials = [t for e in config.entries for t in loss_study(config, e, db).get_trials() if t.state.name == "COMPLETE"]
    trainer = sum(v for t in trials for k, v in t.user_attrs.items() if k.startswith("train_seconds_"))
    return {
        "workers": workers,
        "storage": "postgresql" if storage else "sqlite",
        "trials": len(trials),
        "wall_seconds": round(wall, 2),
        "trials_per_hour": round(len(trials) / wall * 3600, 1),
        "trainer_seconds": round(trainer, 2),
        # Each worker's time is wall x workers; what the trainers did not use of it is the machinery's.
        "overhead": round((wall * workers - trainer) / (wall * workers), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--losses", nargs="+", default=["circle", "triplet"])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument(
        "--steps", type=int, default=50, help="steps per run (the preset's 300 take ~2.7 min a run here)"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-study-"))
    try:
        path = study_file(work / "sqlite", args.losses, args.trials, args.steps)
        config = load_study_config(path)
        data = run_config(config, config.entries[0], {}, {"data.folds": config.folds}, work / "x").data
        for fold in range(config.folds):  # build the caches before any timing
            for split in ("train", "val"):
                load_split(dataclasses.replace(data, fold=fold), split, None, progress=False)
        rows = [run(path, 1, None)]
        with postgres_server() as url:
            rows.append(run(study_file(work / "postgres", args.losses, args.trials, args.steps), 2, url))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "python benchmarks/bench_study.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = {
        "command": command.strip(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "preset": str(PRESET.relative_to(ROOT)),
        "losses": args.losses,
        "trials_per_loss": args.trials,
        "steps_per_run": args.steps,
        "runs": rows,
    }
    out = ROOT / "benchmarks" / "results"
    (out / "bench_study.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Study benchmark",
        "",
        f"`{report['command']}` ({os.cpu_count()} CPUs); preset `{report['preset']}`, "
        f"losses {', '.join(args.losses)}, {args.trials} trials each, no pruning.",
        "",
        "| storage | workers | trials | wall s | trials/hour | trainer s | overhead |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['storage']} | {r['workers']} | {r['trials']} | {r['wall_seconds']} | "
            f"{r['trials_per_hour']} | {r['trainer_seconds']} | {100 * r['overhead']:.1f}% |"
        )
    (out / "bench_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
