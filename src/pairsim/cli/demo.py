"""``pairsim demo``: the main job. Train Circle loss on hangul-fonts, evaluate on 1,000 unseen classes
against the pretrained baseline, and write ``runs/demo/metrics.json`` and ``runs/demo/report.html``."""

from __future__ import annotations

import argparse
from typing import Any

from pairsim.data.transforms import AugmentConfig
from pairsim.training.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SamplerConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_config,
    to_dict,
)

# The demo's run configuration; configs/hangul-fonts/demo.yaml is the same, for `pairsim train`.
# Chosen for 2 CPU cores and a 10-minute training budget: 64 px (32 px loses too much of the glyphs'
# strokes for ImageNet features), a high learning rate with a cosine decay over few steps, and no
# augmentation (500 x 32 draws visit each of the ~5,600 classes ~3 times: far from overfitting).
DEMO_CONFIG = TrainConfig(
    data=DataConfig(name="hangul-fonts", image_size=64, eval_max_classes=100),
    model=ModelConfig(name="efficientnet-lite0", embedding_dim=128, pretrained=True),
    loss=LossConfig(name="circle", class_level=False, params={"m": 0.4, "gamma": 80.0}),
    optim=OptimConfig(lr=3e-3, proxy_lr=1e-2, weight_decay=1e-4, warmup_steps=50, final_lr_ratio=0.01),
    sampler=SamplerConfig(classes_per_batch=32, samples_per_class=4),
    augment=AugmentConfig(),
    steps=500,
    seed=0,
    out_dir="runs/demo",
    checkpoint_every=125,
    eval_every=125,
)


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser("demo", help="the main job: train Circle loss on hangul-fonts, report")
    parser.add_argument("--config", help="a YAML run configuration instead of the built-in demo one")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--eval-classes", type=int, default=1000, help="held-out classes of the final evaluation")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    parser.set_defaults(func=run)


def demo_config(path: str | None, overrides: list[str]) -> TrainConfig:
    """The built-in demo configuration, or the one at ``path``, with ``key=value`` overrides."""
    if path is not None:
        return load_config(path, overrides)
    return from_dict(TrainConfig, apply_overrides(to_dict(DEMO_CONFIG), overrides))


def run(args: argparse.Namespace) -> int:
    """Run the demo and print a summary; returns 0."""
    from pairsim.training.demo import run_demo

    config = demo_config(args.config, args.overrides)
    result = run_demo(config, eval_classes=args.eval_classes, progress=args.progress)
    print()
    print(f"{'held-out metrics':28s} {'precision@1':>12s} {'R-precision':>12s} {'MAP@R':>8s}")
    for name, values in (("pretrained baseline", result.baseline), ("trained, circle loss", result.trained)):
        print(f"{name:28s} {values['precision_at_1']:12.4f} {values['r_precision']:12.4f} {values['map_at_r']:8.4f}")
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"time: {times}")
    print(f"wrote {result.metrics_path} and {result.report_path}")
    return 0
