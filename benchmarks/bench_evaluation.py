"""Evaluation benchmark: ``pairsim.evaluation.retrieval_metrics`` against PML's ``AccuracyCalculator``.

Same run, same embeddings: leave-one-out precision@1, R-precision and MAP@R from pairsim (exact
k-NN: the tiled numba path, :mod:`pairsim.evaluation.tiled`, when numba is installed) and from PML
``AccuracyCalculator(k="max_bin_count")`` (faiss ``IndexFlatL2``) on L2-normalised float32
embeddings of synthetic classes (centre + Gaussian noise). Reported: the largest absolute difference
of the three metrics and the wall time of each (median of ``--repeats``; pairsim also computes MAP,
MRR and recall@k in its time). pairsim's first call in a process (numba loading its compiled
kernels from the cache, or compiling them once after an install) is made on a small subset before
the timed runs and reported apart. A second part checks that ``N = 1,000,000 x D = 512`` fits in
memory: the full gallery, ``--feasibility-queries`` queries against it, in a fresh subprocess whose
peak RSS is reported; the time for all 10^6 queries is extrapolated linearly (each query costs the
same ``N x D`` GEMM row and top-k). Leave-one-out on the 10^6 set computes only half the score
matrix (symmetric tiles); ``--loo-n`` times leave-one-out at a smaller N, extrapolated by ``N^2``.

    python benchmarks/bench_evaluation.py                  # full: N in {10k, 60k}, D in {128, 512}
    python benchmarks/bench_evaluation.py --quick          # N = 10k only, small feasibility run
    python benchmarks/bench_evaluation.py --only 60000x128x5 --skip-feasibility   # one configuration

Results go to ``benchmarks/results/bench_evaluation[-quick].{json,md}`` with the exact command line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = {"precision_at_1": "precision_at_1", "r_precision": "r_precision", "map_at_r": "mean_average_precision_at_r"}


def synthetic(n: int, dim: int, per_class: int, seed: int, noise: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(n, dim)`` unit float32 embeddings of ``~n / per_class`` classes (centre + noise), labels shuffled.

    The default noise, ``1.6 (dim / 128)^(1/4)``, puts MAP@R at N = 10k between ~0.3 and ~0.7, the
    range of trained embeddings in the Reality Check tables, rather than at a trivial 1.0.
    """
    noise = 1.6 * (dim / 128) ** 0.25 if noise is None else noise
    g = torch.Generator().manual_seed(seed)
    classes = max(1, n // per_class)
    labels = torch.arange(n) % classes
    labels = labels[torch.randperm(n, generator=g)]
    centres = torch.randn(classes, dim, generator=g)
    x = torch.empty(n, dim)
    for start in range(0, n, 100_000):  # chunks: the 1e6 x 512 set is built without a second copy
        stop = min(start + 100_000, n)
        chunk = centres[labels[start:stop]] + noise * torch.randn(stop - start, dim, generator=g)
        x[start:stop] = torch.nn.functional.normalize(chunk, dim=1)
    return x.numpy(), labels.numpy()


def time_call(fn: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def warm_up() -> float:
    """pairsim's first call in this process, on a small set: loads (or compiles) the numba kernels."""
    from pairsim.evaluation import retrieval_metrics

    x, y = synthetic(2000, 64, 5, seed=0)
    start = time.perf_counter()
    retrieval_metrics(x, y, ks=(1,), normalize=False)
    return time.perf_counter() - start


def search_path() -> str:
    """Which exact k-NN path pairsim takes on float32 CPU input here."""
    from pairsim.evaluation import tiled

    x = torch.zeros(2, 2)
    if not tiled.available(x, x):
        return "torch blocked top-k (numba not installed)"
    import numba

    return f"tiled, numba {numba.__version__} kernels, {tiled.gemm_name()} float32 GEMM, near-ties re-ranked in float64"


def compare(n: int, dim: int, per_class: int, repeats: int) -> dict[str, Any]:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    from pairsim.evaluation import retrieval_metrics

    x, y = synthetic(n, dim, per_class, seed=n + dim + per_class)
    calc = AccuracyCalculator(include=tuple(METRICS.values()), k="max_bin_count", device=torch.device("cpu"))
    t_pml, pml = time_call(lambda: calc.get_accuracy(x, y), repeats)
    t_ours, ours = time_call(lambda: retrieval_metrics(x, y, ks=(1,), normalize=False), repeats)
    diffs = {name: abs(ours[name] - pml[key]) for name, key in METRICS.items()}
    row = {
        "n": n,
        "dim": dim,
        "per_class": per_class,
        "pairsim_s": round(t_ours, 3),
        "pml_s": round(t_pml, 3),
        "speedup": round(t_pml / t_ours, 2),
        "max_abs_diff": max(diffs.values()),
        "pairsim": {name: ours[name] for name in METRICS},
        "pml": {name: pml[key] for name, key in METRICS.items()},
    }
    print(json.dumps(row), flush=True)
    return row


def feasibility_child(n: int, dim: int, queries: int, method: str) -> None:
    """Runs in its own process so that its peak RSS is its own; prints one JSON line.

    ``queries == 0``: leave-one-out on all ``n`` (symmetric tiles).
    """
    from pairsim.evaluation import retrieval_metrics

    first_call_s = warm_up()
    start = time.perf_counter()
    x, y = synthetic(n + queries, dim, 100, seed=1)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    if queries == 0:
        m = retrieval_metrics(x, y, ks=(1,), normalize=False, method=method)  # type: ignore[arg-type]
    else:
        m = retrieval_metrics(
            x[queries:],
            y[queries:],
            x[:queries],
            y[:queries],
            ks=(1,),
            normalize=False,
            method=method,  # type: ignore[arg-type]
        )
    eval_s = time.perf_counter() - start
    peak = peak_rss_bytes()
    result = {
        "n": n,
        "dim": dim,
        "queries": queries,
        "method": method,
        "first_call_s": round(first_call_s, 2),
        "build_s": round(build_s, 1),
        "eval_s": round(eval_s, 2),
        "peak_rss_gib": round(peak / 2**30, 2),
        "precision_at_1": m["precision_at_1"],
    }
    if queries:
        result["extrapolated_all_queries_s"] = round(eval_s * n / queries, 0)
    print(json.dumps(result), flush=True)


def peak_rss_bytes() -> int:
    """This process's peak resident set size.

    ``VmHWM`` where Linux has it: ``ru_maxrss`` survives ``execve``, so a child started from a large
    parent would report the parent's size at the fork.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


def feasibility(n: int, dim: int, queries: int, method: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--feasibility-child", str(n), str(dim), str(queries), method]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(row), flush=True)
    return dict(row)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Evaluation benchmark: pairsim vs PML AccuracyCalculator",
        "",
        f"Command: `{report['command']}`  ",
        f"Machine: {report['machine']}; torch threads {report['threads']}; {report['date']}",
        "",
        "Leave-one-out precision@1, R-precision, MAP@R on unit float32 embeddings; time is the median of "
        f"{report['repeats']} run(s). pairsim path: {report.get('pairsim_path', 'n/a')}; its first call in the "
        f"process (numba kernels loaded from the cache), made before the timed runs: "
        f"{report.get('pairsim_first_call_s', float('nan')):.2f} s. pairsim ranks near-ties by their exact (float64) "
        "score; PML by float32 L2 distances, so the few near-ties PML orders the other way show up in the "
        "last digits of R-precision and MAP@R.",
        "",
        "| N | D | per class | pairsim s | PML s | speed-up | max abs diff | P@1 | RP | MAP@R |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["comparison"]:
        p = r["pairsim"]
        lines.append(
            f"| {r['n']} | {r['dim']} | {r['per_class']} | {r['pairsim_s']:.2f} | {r['pml_s']:.2f} | "
            f"{r['speedup']:.2f}x | {r['max_abs_diff']:.1e} | {p['precision_at_1']:.4f} | {p['r_precision']:.4f} | "
            f"{p['map_at_r']:.4f} |"
        )
    for f in report["feasibility"]:
        if f["queries"]:
            lines += [
                "",
                f"Feasibility, N = {f['n']:,} x D = {f['dim']} ({f['method']}): {f['queries']:,} queries against the "
                f"full gallery in {f['eval_s']:.1f} s, peak RSS {f['peak_rss_gib']:.2f} GiB (embeddings alone: "
                f"{(f['n'] + f['queries']) * f['dim'] * 4 / 2**30:.2f} GiB); all {f['n']:,} queries extrapolated: "
                f"{f['extrapolated_all_queries_s']:.0f} s.",
            ]
        else:
            scale = (report["feasibility_n"] / f["n"]) ** 2
            lines += [
                "",
                f"Leave-one-out, N = {f['n']:,} x D = {f['dim']} ({f['method']}, symmetric tiles): "
                f"{f['eval_s']:.1f} s, peak RSS {f['peak_rss_gib']:.2f} GiB; extrapolated to "
                f"N = {report['feasibility_n']:,} by N^2: {f['eval_s'] * scale:.0f} s.",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 10k only and a small feasibility run")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per configuration (1 quick, 3 full)")
    parser.add_argument("--feasibility-n", type=int, default=1_000_000)
    parser.add_argument("--feasibility-queries", type=int, default=None, help="500 quick, 5000 full")
    parser.add_argument("--feasibility-method", default="exact", choices=("exact", "faiss", "hnsw"))
    parser.add_argument("--skip-feasibility", action="store_true")
    parser.add_argument("--loo-n", type=int, default=None, help="also time leave-one-out at this N, D = 512")
    parser.add_argument("--only", nargs="*", default=None, help="configurations NxDxPER_CLASS, e.g. 60000x128x5")
    parser.add_argument("--feasibility-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feasibility_child:
        n, dim, queries, method = args.feasibility_child
        feasibility_child(int(n), int(dim), int(queries), method)
        return
    repeats = args.repeats or (1 if args.quick else 3)
    sizes = [10_000] if args.quick else [10_000, 60_000]
    configs = [(n, d, per) for n in sizes for d in (128, 512) for per in (5, 100)]
    if args.only is not None:
        configs = [(int(n), int(d), int(per)) for n, d, per in (c.split("x") for c in args.only)]
    first_call_s = warm_up()
    report: dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "repeats": repeats,
        "pairsim_path": search_path(),
        "pairsim_first_call_s": round(first_call_s, 2),
        "comparison": [compare(n, d, per, repeats) for n, d, per in configs],
        "feasibility": [],
        "feasibility_n": args.feasibility_n,
    }
    if not args.skip_feasibility:
        queries = args.feasibility_queries or (500 if args.quick else 5000)
        report["feasibility"].append(feasibility(args.feasibility_n, 512, queries, args.feasibility_method))
    if args.loo_n:
        report["feasibility"].append(feasibility(args.loo_n, 512, 0, args.feasibility_method))
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "bench_evaluation-quick" if args.quick else "bench_evaluation"
    if args.only is not None:
        name += "-" + "-".join(args.only)
    stem = RESULTS / name
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
