"""Execution settings against the exact path: training steps and embedding, images/s, in the same run.

Each setting gets its own trainer (same seed, same batches); their steps are timed alternately (exact,
auto, bf16, ..., exact, auto, ...), so that load from other processes hits all alike. The compiled
setting's first step (the compilation) is reported apart, with its graphs and breaks. Embedding: the
same images embedded under each setting, alternately, and the cosine of each setting's embeddings to
the exact ones.

    python benchmarks/bench_speed.py                  # the demo's settings: Lite0, 64 px, P=32 x K=4
    python benchmarks/bench_speed.py --quick          # fewer steps, no compiled setting
    python benchmarks/bench_speed.py --no-compile

Results go to ``benchmarks/results/bench_speed[-quick].{json,md}`` with the exact command line.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench_training import synthetic_set  # the same random images (scripts run from benchmarks/)
from pairsim.data.base import ImageSet
from pairsim.models import embed, inference_model, probe_cpu, resolve_execution
from pairsim.training.compile_watch import CompileWatch
from pairsim.training.config import load_config
from pairsim.training.trainer import Trainer

RESULTS = Path(__file__).resolve().parent / "results"
EXACT = {"precision": "fp32", "channels_last": False, "compile": False}
TRAIN_SETTINGS: dict[str, dict[str, Any]] = {
    "exact (fp32, NCHW, eager)": EXACT,
    "auto (the default)": {"precision": "auto", "channels_last": "auto", "compile": "auto"},
    "fp32, channels-last": {"precision": "fp32", "channels_last": True, "compile": False},
    "bf16, channels-last": {"precision": "bf16", "channels_last": True, "compile": False},
    "bf16, NCHW": {"precision": "bf16", "channels_last": False, "compile": False},
}
COMPILED = {"fp32, channels-last, compiled": {"precision": "fp32", "channels_last": True, "compile": True}}


def trainer_for(args: argparse.Namespace, setting: dict[str, Any], data: ImageSet) -> Trainer:
    overrides = [
        f"model.name={args.model}",
        f"model.pretrained={str(args.model == 'efficientnet-lite0').lower()}",
        f"sampler.classes_per_batch={args.P}",
        f"sampler.samples_per_class={args.K}",
        "loss.name=circle",
        f"steps={args.warmup + args.repeats}",
        "out_dir=/tmp/pairsim-bench-speed",
        "device=cpu",
        *(f"{key}={str(value).lower()}" for key, value in setting.items()),
    ]
    return Trainer(load_config(None, overrides), data, None, progress=False)


def measure_training(args: argparse.Namespace, settings: dict[str, dict[str, Any]]) -> dict[str, Any]:
    data = synthetic_set(4 * args.P, 8, args.size, args.channels)
    trainers = {name: trainer_for(args, setting, data) for name, setting in settings.items()}
    times: dict[str, list[float]] = {name: [] for name in trainers}
    compile_records: dict[str, dict[str, Any]] = {}
    for name, trainer in trainers.items():  # the first step of each, apart: a compiled one compiles here
        watch = CompileWatch()
        tick = time.perf_counter()
        trainer.train_step(0)
        seconds = time.perf_counter() - tick
        if trainer.execution.compile:
            compile_records[name] = watch.after_first_step(seconds)
    for step in range(1, args.warmup + args.repeats):
        for name, trainer in trainers.items():
            tick = time.perf_counter()
            trainer.train_step(step)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - tick)
    batch = args.P * args.K
    exact_median = statistics.median(times[next(iter(times))])
    return {
        name: {
            "execution": trainers[name].execution.describe(),
            "images_per_s": batch / statistics.median(t),
            "median_ms": 1000 * statistics.median(t),
            "speedup_vs_exact": exact_median / statistics.median(t),
            **({"compile": compile_records[name]} if name in compile_records else {}),
        }
        for name, t in times.items()
    }


def measure_embedding(args: argparse.Namespace) -> dict[str, Any]:
    trainer = trainer_for(args, EXACT, synthetic_set(args.P, args.K, args.size, args.channels))
    model = trainer.model.eval()
    images = np.random.default_rng(1).integers(0, 256, (args.embed_images, args.channels, args.size, args.size))
    images = images.astype(np.uint8)
    cases = {
        "exact (fp32, NCHW)": resolve_execution("fp32", False, False, phase="inference"),
        "auto (the default)": resolve_execution(phase="inference"),
        "fp32, channels-last": resolve_execution("fp32", True, False, phase="inference"),
        "bf16, channels-last": resolve_execution("bf16", True, False, phase="inference"),
    }
    prepared = {name: inference_model(model, execution) for name, execution in cases.items()}
    reference = embed(model, images, args.embed_batch)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.embed_repeats):
        for name, execution in cases.items():
            tick = time.perf_counter()
            embed(prepared[name], images, args.embed_batch, execution=execution)
            times[name].append(time.perf_counter() - tick)
    exact_median = statistics.median(times[next(iter(times))])
    out = {}
    for name, execution in cases.items():
        got = embed(prepared[name], images, args.embed_batch, execution=execution)
        cosine = torch.nn.functional.cosine_similarity(got, reference)
        out[name] = {
            "execution": execution.describe(),
            "images_per_s": len(images) / statistics.median(times[name]),
            "speedup_vs_exact": exact_median / statistics.median(times[name]),
            "min_cosine_to_exact": float(cosine.min()),
            "max_abs_diff": float((got - reference).abs().max()),
        }
    return out


def write(args: argparse.Namespace, result: dict[str, Any]) -> Path:
    stem = args.out or RESULTS / ("bench_speed-quick" if args.quick else "bench_speed")
    stem.parent.mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(shlex.quote(a) for a in ["benchmarks/bench_speed.py", *sys.argv[1:]])
    cpu = probe_cpu()
    meta = {
        "command": command,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, AVX512-BF16 {cpu.avx512_bf16}, "
        f"AMX {cpu.amx}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": torch.__version__,
        "setup": f"{args.model}, {args.size} px, {args.channels} channel(s), P={args.P} x K={args.K}, circle loss",
    }
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "result": result}, indent=2) + "\n")
    train_rows = "\n".join(
        f"| {name} | {r['execution']} | {r['images_per_s']:.1f} | {r['median_ms']:.0f} | {r['speedup_vs_exact']:.2f}x |"
        for name, r in result["training"].items()
    )
    embed_rows = "\n".join(
        f"| {name} | {r['execution']} | {r['images_per_s']:.0f} | {r['speedup_vs_exact']:.2f}x | "
        f"{r['min_cosine_to_exact']:.4f} | {r['max_abs_diff']:.2g} |"
        for name, r in result["embedding"].items()
    )
    compiled = [
        f"- {name}: first step (compilation) {r['compile']['first_step_seconds']:.0f} s, "
        f"{r['compile']['graphs']} graph(s), {r['compile']['graph_breaks']} graph break(s)"
        for name, r in result["training"].items()
        if "compile" in r
    ]
    stem.with_suffix(".md").write_text(
        f"# Execution settings: training and embedding throughput\n\nCommand: `{command}`  \n"
        f"Machine: {meta['machine']}; torch {meta['torch']}; {meta['date']}  \nSetup: {meta['setup']}; "
        f"training: median of {args.repeats} steps after {args.warmup} warm-up, settings timed alternately; "
        f"embedding: {args.embed_images} images in batches of {args.embed_batch}, median of "
        f"{args.embed_repeats}, alternately.\n\n## Training step (the trainer's full step)\n\n"
        "| setting | resolved | images/s | median ms | vs exact |\n|---|---|---:|---:|---:|\n"
        f"{train_rows}\n\n" + ("\n".join(compiled) + "\n\n" if compiled else "") + "## Embedding (eval mode, "
        "BatchNorm folded on the fast paths)\n\n| setting | resolved | images/s | vs exact | min cosine to exact "
        f"| max abs diff |\n|---|---|---:|---:|---:|---:|\n{embed_rows}\n"
    )
    return stem.with_suffix(".md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--channels", type=int, default=1)
    parser.add_argument("--P", type=int, default=32)
    parser.add_argument("--K", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--embed-images", type=int, default=2048)
    parser.add_argument("--embed-batch", type=int, default=256)
    parser.add_argument("--embed-repeats", type=int, default=5)
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled setting")
    parser.add_argument("--quick", action="store_true", help="4 timed steps, 2 embedding repeats, no compile")
    parser.add_argument("--out", type=Path, default=None, help="results path without suffix")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.warmup, args.embed_repeats, args.embed_images, args.no_compile = 4, 1, 2, 512, True
    settings = dict(TRAIN_SETTINGS) if args.no_compile else {**TRAIN_SETTINGS, **COMPILED}
    result = {"training": measure_training(args, settings), "embedding": measure_embedding(args)}
    print(write(args, result).read_text())


if __name__ == "__main__":
    main()
