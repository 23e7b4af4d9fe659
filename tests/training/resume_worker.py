"""A training run on synthetic images, as a separate process that the resume test can SIGKILL.

Usage: ``python tests/training/resume_worker.py OUT_DIR STEPS [--resume] [KEY=VALUE ...]`` (config overrides,
e.g. the execution settings under test).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.training.helpers import synthetic_images

from pairsim.training.config import load_config
from pairsim.training.trainer import Trainer

OVERRIDES = [
    "model.name=small-cnn",
    "model.pretrained=false",
    "model.embedding_dim=16",
    "sampler.classes_per_batch=4",
    "sampler.samples_per_class=4",
    "augment.degrees=10",
    "augment.translate=0.1",
    "optim.warmup_steps=3",
    "checkpoint_every=4",
    "eval_every=20",
    "threads=1",
]


def main() -> None:
    out_dir, steps = sys.argv[1], int(sys.argv[2])
    extra = [arg for arg in sys.argv[3:] if "=" in arg]
    config = load_config(None, [*OVERRIDES, f"out_dir={out_dir}", f"steps={steps}", *extra])
    train, held_out = synthetic_images(12, 6, seed=0), synthetic_images(5, 4, seed=1, split="test")
    Trainer(config, train, held_out, progress=False).run(resume="--resume" in sys.argv)


if __name__ == "__main__":
    main()
