"""Training-step benchmark: the trainer's full step against the backbone's forward + backward alone.

The full step is ``Trainer.train_step``: P-K sampling, uint8 to float, kornia augmentation, backbone,
embedding head, loss, backward, AdamW step, and the paper's similarity diagnostics. The floor is the
backbone's forward and backward on the same batches, already materialised as float tensors. The two are
timed alternately (step, floor, step, floor, ...) so that load from other processes hits both alike.
Overhead = full / floor - 1; the target is <= 10%. Also reported: the floor plus the AdamW step, to show
how much of the overhead is the optimiser (which any training needs) rather than data, loss or logging.

    python benchmarks/bench_training.py                 # Lite0 at 64 px, P=32 x K=4, 20 timed steps
    python benchmarks/bench_training.py --quick         # 5 timed steps
    python benchmarks/bench_training.py --device cuda --precision bf16 --out benchmarks/results/bench_training-gpu-bf16

Results go to ``benchmarks/results/bench_training[-quick].{json,md}`` with the exact command line.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairsim.data.base import ImageSet
from pairsim.models import to_float
from pairsim.training.config import load_config
from pairsim.training.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_set(num_classes: int, per_class: int, side: int, channels: int) -> ImageSet:
    """Random uint8 images: the content does not change the cost of a step."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(num_classes), per_class).astype(np.int64)
    images = rng.integers(0, 256, (len(labels), channels, side, side), dtype=np.uint8)
    keys = tuple(str(i) for i in range(num_classes))
    return ImageSet(images, labels, keys, tuple("x" for _ in labels), "synthetic", "train")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    overrides = [
        f"model.name={args.model}",
        f"model.pretrained={str(args.model == 'efficientnet-lite0').lower()}",
        f"sampler.classes_per_batch={args.P}",
        f"sampler.samples_per_class={args.K}",
        f"loss.name={args.loss}",
        "augment.degrees=4",
        "augment.translate=0.04",
        "augment.scale=[0.92, 1.08]",
        f"steps={args.warmup + args.repeats}",
        "out_dir=/tmp/pairsim-bench-training",
        f"device={args.device}",
        f"precision={args.precision}",
    ]
    config = load_config(None, overrides)
    trainer = Trainer(config, synthetic_set(4 * args.P, 8, args.size, args.channels), None, progress=False)
    batch = args.P * args.K
    device = trainer.device
    floor_batches = [  # in the layout the trainer's execution settings give the model
        trainer.execution.layout(
            to_float(torch.from_numpy(trainer.train_set.images[trainer.sampler.batch(s)]).to(device))
        )
        for s in range(args.warmup + args.repeats)
    ]
    params = list(trainer.model.backbone.parameters())
    upstream = torch.randn(batch, trainer.model.num_features, device=device)

    def floor(step: int) -> None:
        for p in params:
            p.grad = None
        with trainer.execution.autocast(device):
            features = trainer.model.features(floor_batches[step]).float()  # (B, F)
        # A dense upstream gradient, as the head gives in the full step (``.sum()`` would send a stride-0 one).
        features.backward(upstream[: len(features)])

    def floor_with_optimizer(step: int) -> None:
        floor(step)
        trainer.optimizer.step()

    times: dict[str, list[float]] = {"full step": [], "backbone fwd+bwd": [], "backbone fwd+bwd + AdamW": []}
    calls: dict[str, Callable[[int], object]] = {
        "full step": trainer.train_step,
        "backbone fwd+bwd": floor,
        "backbone fwd+bwd + AdamW": floor_with_optimizer,
    }
    for step in range(args.warmup + args.repeats):
        for name, call in calls.items():
            sync(device)
            tick = time.perf_counter()
            call(step)
            sync(device)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - tick)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {
        "images_per_s": {name: batch / t for name, t in medians.items()},
        "median_s": medians,
        "min_s": {name: min(t) for name, t in times.items()},
        "overhead_vs_backbone": medians["full step"] / medians["backbone fwd+bwd"] - 1.0,
        "overhead_vs_backbone_and_optimizer": medians["full step"] / medians["backbone fwd+bwd + AdamW"] - 1.0,
        "overhead_vs_backbone_by_min": min(times["full step"]) / min(times["backbone fwd+bwd"]) - 1.0,
        "batch": batch,
        "execution": trainer.execution.describe(),
    }


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a step's time is its own."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write(args: argparse.Namespace, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stem = args.out or RESULTS / ("bench_training-quick" if args.quick else "bench_training")
    stem.parent.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/bench_training.py", *sys.argv[1:]])
    meta = {
        "command": command,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads"
        + (f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "setup": f"{args.model}, {args.size} px, {args.channels} channel(s), P={args.P} x K={args.K}, loss {args.loss}"
        f", device {args.device}, precision {args.precision} ({result['execution']})",
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "result": result}, indent=2) + "\n")
    rows = "\n".join(
        f"| {name} | {result['images_per_s'][name]:.1f} | {result['median_s'][name] * 1000:.0f} | "
        f"{result['min_s'][name] * 1000:.0f} |"
        for name in result["median_s"]
    )
    stem.with_suffix(".md").write_text(
        f"# Training-step benchmark\n\nCommand: `{command}`  \nMachine: {meta['machine']}; torch {meta['torch']}; "
        f"{meta['date']}  \nSetup: {meta['setup']}; median of {args.repeats} steps after {args.warmup} warm-up, "
        "timed alternately.\n\n| what | images/s | median ms | min ms |\n|---|---:|---:|---:|\n"
        f"{rows}\n\nOverhead of the full step over the backbone's forward+backward: "
        f"{100 * result['overhead_vs_backbone']:.1f}% (over backbone + AdamW: "
        f"{100 * result['overhead_vs_backbone_and_optimizer']:.1f}%); by the fastest step of each: "
        f"{100 * result['overhead_vs_backbone_by_min']:.1f}%. Target <= 10%.\n"
    )
    return stem.with_suffix(".md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--P", type=int, default=32)
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--loss", default="circle")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="5 timed steps after 2 warm-up steps")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (the trainer's device setting)")
    parser.add_argument("--precision", default="fp32", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--out", type=Path, default=None, help="output stem (default results/bench_training[-quick])")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup = 5, 2
    path = write(args, measure(args))
    print(path.read_text())


if __name__ == "__main__":
    main()
