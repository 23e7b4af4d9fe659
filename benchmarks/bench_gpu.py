"""GPU benchmark: pairsim's losses against pytorch-metric-learning (PML) on one CUDA device, same run.

Forward + backward of each loss on the same inputs (float32, TF32 off, as both libraries default),
timed with CUDA events (median of ``--repeats`` after ``--warmup`` calls) and the peak extra device
memory of one call (``torch.cuda.max_memory_allocated`` minus what was allocated just before). The
bare GEMMs are the floor: ``(B x D)(D x C)`` forward and backward for class-level losses, the three
``B x B x D`` GEMMs of a pair-wise loss. Then the evaluator: leave-one-out ``retrieval_metrics`` on
CUDA tensors, clustered synthetic embeddings (N up to 1e6, D = 512).

The CPU numbers of issue 2 and 4 are in ``bench_losses.md`` / ``bench_evaluation.md``; this file is
what a GPU user sees. Needs a CUDA device and PML (carried as a wheel to a machine without PyPI)::

    python benchmarks/bench_gpu.py                  # -> benchmarks/results/bench_gpu.{json,md}
    python benchmarks/bench_gpu.py --quick
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
D, K = 512, 4


def _loss(impl: str, group: str, classes: int, p: dict[str, float]) -> torch.nn.Module:
    if impl == "pml":
        from pytorch_metric_learning import losses as pml

        if group == "circle-pair":
            return pml.CircleLoss(m=p["m"], gamma=p["gamma"])
        if group == "cosface":
            return pml.CosFaceLoss(num_classes=classes, embedding_size=D, margin=p["m"], scale=p["gamma"])
        if group == "arcface":  # PML's margin is in degrees
            return pml.ArcFaceLoss(
                num_classes=classes, embedding_size=D, margin=p["m"] * 57.29577951308232, scale=p["gamma"]
            )
        if group == "ntxent":
            return pml.NTXentLoss(temperature=p["temperature"])
        raise ValueError(f"no PML counterpart for {group}")
    from pairsim import create_loss

    name = "circle" if group.startswith("circle") else group
    kwargs: dict[str, Any] = dict(p)
    if classes:
        kwargs.update(num_classes=classes, embedding_dim=D)
    if name in ("circle", "cosface", "arcface"):
        kwargs["fast_path"] = {"pairsim": None, "pairsim-fast": True, "pairsim-plain": False}[impl]
    return create_loss(name, **kwargs)


def _step(impl: str, group: str, batch: int, classes: int, p: dict[str, float]) -> Callable[[], None]:
    """Inputs and one forward + backward call, allocated before the measurement."""
    dev = torch.device("cuda")
    torch.manual_seed(0)
    x = torch.randn(batch, D, device=dev, requires_grad=True)
    if group == "ntxent":
        labels = torch.arange(batch, device=dev) // 2
    else:
        labels = torch.randint(0, classes, (batch,), device=dev) if classes else torch.arange(batch, device=dev) // K
    if impl == "gemm":
        if classes:
            w = torch.randn(classes, D, device=dev, requires_grad=True)
            g = torch.randn(batch, classes, device=dev)

            def step_class() -> None:
                (x @ w.T).backward(g)
                x.grad, w.grad = None, None

            return step_class
        g = torch.randn(batch, batch, device=dev)
        xd = x.detach()

        def step_pair() -> None:
            _ = xd @ xd.T
            _ = g @ xd
            _ = g.T @ xd

        return step_pair
    loss = _loss(impl, group, classes, p).to(dev)

    def step() -> None:
        loss(x, labels).backward()
        x.grad = None
        loss.zero_grad(set_to_none=True)

    return step


def measure(step: Callable[[], None], warmup: int, repeats: int) -> dict[str, float]:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "peak_extra_mib": peak / 2**20}


def loss_rows(quick: bool, warmup: int, repeats: int) -> list[dict[str, Any]]:
    circle_pair, circle_class = {"m": 0.4, "gamma": 80.0}, {"m": 0.25, "gamma": 256.0}
    cases: list[tuple[str, str, int, int, dict[str, float]]] = []
    for b in [1024, 4096] if quick else [1024, 4096, 16384]:
        for impl in ["pairsim", "pairsim-fast", "pairsim-plain", "pml", "gemm"]:
            cases.append(("circle-pair", impl, b, 0, circle_pair))
    for c in [100_000] if quick else [100_000, 1_000_000]:
        cases += [("circle-class", impl, 256, c, circle_class) for impl in ["pairsim", "pairsim-plain"]]
        for group, p in [("cosface", {"m": 0.35, "gamma": 64.0}), ("arcface", {"m": 0.5, "gamma": 64.0})]:
            cases += [(group, impl, 256, c, p) for impl in ["pairsim", "pairsim-plain", "pml"]]
        cases.append(("gemm-class", "gemm", 256, c, {}))
    cases += [("ntxent", impl, b, 0, {"temperature": 0.07}) for b in [512, 4096] for impl in ["pairsim", "pml"]]
    rows = []
    for group, impl, b, c, p in cases:
        try:
            result: dict[str, Any] = dict(measure(_step(impl, group, b, c, p), warmup, repeats))
        except torch.cuda.OutOfMemoryError:
            result = {"error": "out of memory"}
        torch.cuda.empty_cache()
        row = {"group": group, "impl": impl, "batch": b, "classes": c, **result}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def eval_rows(quick: bool) -> list[dict[str, Any]]:
    from pairsim.evaluation import retrieval_metrics

    rows = []
    for n, per_class in [(60_000, 5), (60_000, 100)] + ([] if quick else [(1_000_000, 5)]):
        g = torch.Generator(device="cuda").manual_seed(0)
        labels = torch.arange(n, device="cuda") // per_class
        centres = torch.randn(n // per_class, D, device="cuda", generator=g)
        x = centres[labels] + 2.0 * torch.randn(n, D, device="cuda", generator=g)
        retrieval_metrics(x[:1000], labels[:1000])  # warm-up: kernels and allocator
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        metrics = retrieval_metrics(x, labels)
        torch.cuda.synchronize()
        row: dict[str, Any] = {
            "group": "retrieval_metrics",
            "n": n,
            "per_class": per_class,
            "seconds": time.perf_counter() - start,
            "peak_extra_mib": (torch.cuda.max_memory_allocated() - base) / 2**20,
            "precision_at_1": metrics["precision_at_1"],
            "map_at_r": metrics["map_at_r"],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def markdown(loss: list[dict[str, Any]], ev: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# GPU benchmark ({meta['device']})", "", f"Command: `{meta['command']}`", ""]
    lines += [f"torch {meta['torch']}, float32, TF32 off; forward + backward, median of {meta['repeats']}.", ""]
    lines += ["| case | impl | median ms | peak extra MiB | vs PML |", "|---|---|---:|---:|---:|"]
    pml = {(r["group"], r["batch"], r["classes"]): r.get("median_ms") for r in loss if r["impl"] == "pml"}
    for r in loss:
        case = f"{r['group']} B={r['batch']}" + (f" C={r['classes']:.0e}".replace("+0", "") if r["classes"] else "")
        if "error" in r:
            lines.append(f"| {case} | {r['impl']} | {r['error']} | | |")
            continue
        ref = pml.get((r["group"], r["batch"], r["classes"]))
        ratio = f"{ref / r['median_ms']:.1f}x" if ref and r["impl"] != "pml" else ""
        lines.append(f"| {case} | {r['impl']} | {r['median_ms']:.2f} | {r['peak_extra_mib']:.0f} | {ratio} |")
    lines += [
        "",
        "| retrieval_metrics (leave-one-out) | seconds | peak extra MiB | P@1 | MAP@R |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in ev:
        case = f"N={r['n']} D={D}, {r['per_class']} per class"
        scores = f"{r['precision_at_1']:.4f} | {r['map_at_r']:.4f}"
        lines.append(f"| {case} | {r['seconds']:.2f} | {r['peak_extra_mib']:.0f} | {scores} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sizes, for trial runs")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="output stem (default results/bench_gpu[-quick])")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device")
    torch.backends.cuda.matmul.allow_tf32 = False
    # cuBLAS allocates its workspace on the first GEMM; without this the first row's peak would include it.
    a = torch.randn(64, 64, device="cuda", requires_grad=True)
    (a @ a).sum().backward()
    torch.cuda.synchronize()
    meta = {
        "command": "python " + shlex.join(["benchmarks/bench_gpu.py", *(argv if argv is not None else sys.argv[1:])]),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "repeats": args.repeats,
    }
    loss = loss_rows(args.quick, args.warmup, args.repeats)
    ev = eval_rows(args.quick)
    stem = args.out or RESULTS / ("bench_gpu-quick" if args.quick else "bench_gpu")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "losses": loss, "evaluation": ev}, indent=2))
    stem.with_suffix(".md").write_text(markdown(loss, ev, meta))
    print(stem.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
