"""The demo's held-out metrics under the fast inference settings against the exact path.

Loads the demo's final model (``RUN/train/last.pt``) and its 1,000 held-out test classes (the split the
demo evaluated once), embeds them under the exact path (fp32, NCHW) and under ``auto`` (bf16,
channels-last, BatchNorm folded on AVX512-BF16 CPUs), for the trained embeddings and for the pretrained
baseline's frozen features, and reports the metrics, their differences and the time of each.

    python benchmarks/bench_demo_agreement.py runs/demo      # after `pairsim demo`

Results go to ``benchmarks/results/bench_demo_agreement.{json,md}`` with the exact command line.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from pairsim.models import create_model, embed, load_model, resolve_execution
from pairsim.training.config import TrainConfig, from_dict, upgrade_saved_config
from pairsim.training.evaluate import RETRIEVAL_KEYS, retrieval_scores
from pairsim.training.run import load_split

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the demo's output directory (runs/demo)")
    parser.add_argument("--eval-classes", type=int, default=1000)
    args = parser.parse_args()
    loaded = load_model(args.run / "train" / "last.pt")
    assert loaded.config is not None, "the demo's checkpoint holds its config"
    config = from_dict(TrainConfig, upgrade_saved_config(loaded.config))
    test = load_split(config.data, "test", args.eval_classes, False)
    baseline = create_model(config.model.name, config.model.embedding_dim, test.images.shape[1], pretrained=True)
    cases = {
        "exact (fp32, NCHW)": resolve_execution("fp32", False, False, phase="inference"),
        "auto": resolve_execution(phase="inference"),
    }
    rows: dict[str, dict[str, Any]] = {}
    for model_name, model, features in (("trained", loaded.model, False), ("pretrained baseline", baseline, True)):
        for case, execution in cases.items():
            tick = time.perf_counter()
            embeddings = embed(model, test.images, features=features, execution=execution)
            seconds = time.perf_counter() - tick
            rows[f"{model_name}, {case}"] = {
                **retrieval_scores(embeddings, test.labels),
                "seconds": seconds,
                "execution": execution.describe(),
            }
    write(args, rows, len(test.labels), test.num_classes)


def write(args: argparse.Namespace, rows: dict[str, dict[str, Any]], images: int, classes: int) -> None:
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/bench_demo_agreement.py", *sys.argv[1:]])
    meta = {
        "command": command,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "held_out": f"{classes} classes, {images} images",
    }
    stem = RESULTS / "bench_demo_agreement"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        f"| {name} | {r['execution']} | "
        + " | ".join(f"{r[k]:.4f}" for k in RETRIEVAL_KEYS)
        + f" | {r['seconds']:.1f} |"
        for name, r in rows.items()
    ]
    names = list(rows)
    diffs = [
        f"- {names[i].split(',')[0]}: largest |auto - exact| "
        f"{max(abs(rows[names[i + 1]][k] - rows[names[i]][k]) for k in RETRIEVAL_KEYS):.4f}"
        for i in range(0, len(names), 2)
    ]
    stem.with_suffix(".md").write_text(
        f"# The demo's held-out metrics: fast inference against the exact path\n\nCommand: `{command}`  \n"
        f"Machine: {meta['machine']}; torch {meta['torch']}; {meta['date']}  \nHeld-out test split: "
        f"{meta['held_out']}.\n\n| model, setting | resolved | {' | '.join(RETRIEVAL_KEYS)} | seconds |\n"
        f"|---|---|{'---:|' * len(RETRIEVAL_KEYS)}---:|\n" + "\n".join(lines) + "\n\n" + "\n".join(diffs) + "\n"
    )
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
