"""Re-ranking benchmark: time and peak memory of k-reciprocal re-ranking, alpha-QE and DBA.

Each configuration runs in a fresh subprocess with ``torch.set_num_threads(2)`` on random unit vectors
(D = 128): the wall time of one call and its peak extra memory (peak resident set size during the call
minus the resident size just before it, the peak reset through ``/proc/self/clear_refs``, as in
``bench_losses.py``). The inputs are allocated before the measurement; one small call first loads what a
process loads once (numba's compiled k-NN kernels, scipy.sparse).

    python benchmarks/bench_reranking.py                   # k-reciprocal at 2k, 5k, 20k; aqe and dba at 100k
    python benchmarks/bench_reranking.py --quick           # k-reciprocal at 2k and 5k, aqe and dba at 20k
    python benchmarks/bench_reranking.py --only kreciprocal --sizes 10000

Results go to ``benchmarks/results/bench_reranking[-quick].{json,md}`` (or the ``--out`` stem) with the
command line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# The same /proc readings and machine name as the loss benchmark (scripts run from benchmarks/).
from bench_losses import _cpu_name, _reset_peak, _rss_kib

RESULTS = Path(__file__).resolve().parent / "results"
GROUPS = ["kreciprocal", "aqe", "dba"]
D = 128


@dataclass(frozen=True)
class Config:
    group: str
    queries: int  # 0 for dba
    gallery: int
    k: int = 10  # aqe / dba neighbours
    k1: int = 20
    k2: int = 6

    @property
    def label(self) -> str:
        sizes = f"n_q={self.queries} n_g={self.gallery}" if self.queries else f"n_g={self.gallery}"
        return f"{self.group} {sizes}"


def configs(quick: bool, only: list[str], sizes: list[int]) -> list[Config]:
    k_sizes = sizes or ([2_000, 5_000] if quick else [2_000, 5_000, 20_000])
    big = 20_000 if quick else 100_000
    out = [Config("kreciprocal", n, n) for n in k_sizes]
    out += [Config("aqe", 10_000, big), Config("dba", 0, big)]
    return [c for c in out if not only or c.group in only]


# ----------------------------------------------------------------------------- worker side


def worker(cfg: Config) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F

    from pairsim.evaluation import alpha_query_expansion, database_augmentation, k_reciprocal_rerank

    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(max(cfg.queries, 1), D, generator=gen), dim=1)
    g = F.normalize(torch.randn(cfg.gallery, D, generator=gen), dim=1)
    if cfg.group == "kreciprocal":
        k_reciprocal_rerank(q[:20], g[:40], cfg.k1, cfg.k2)  # what a process loads once

        def call() -> Any:
            return k_reciprocal_rerank(q, g, cfg.k1, cfg.k2, 0.3)
    elif cfg.group == "aqe":
        alpha_query_expansion(q[:20], g[:40], cfg.k)

        def call() -> Any:
            return alpha_query_expansion(q, g, cfg.k, 3.0)
    else:
        database_augmentation(g[:40], cfg.k)

        def call() -> Any:
            return database_augmentation(g, cfg.k, 3.0)

    base = _rss_kib("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    result = call()
    seconds = time.perf_counter() - start
    peak = _rss_kib("VmHWM") - base
    return {
        "seconds": seconds,
        "peak_extra_mib": peak / 1024,
        "output_mib": result.numel() * result.element_size() / 2**20,
        "inputs_mib": (q.numel() + g.numel()) * 4 / 2**20,
    }


# ----------------------------------------------------------------------------- driver side


def run_one(cfg: Config, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(asdict(cfg))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Re-ranking benchmark",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Machine: {meta['cpu']}, {meta['memory_gib']:.0f} GiB, torch {meta['torch']}, 2 threads; {meta['date']}.",
        "Random unit vectors, D = 128. Time: one call (s). Memory: peak RSS during the call minus RSS before it"
        " (inputs allocated before); the output is part of it.",
        "k-reciprocal: k1 = 20, k2 = 6, lambda = 0.3, over the joint set of N = n_q + n_g items;"
        " aqe / dba: k = 10, alpha = 3.",
        "",
        "| config | seconds | peak extra MiB | output MiB | inputs MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | error: {r['error']} | | | |")
            continue
        cells = [f"{r['seconds']:.1f}", *(f"{r[key]:.0f}" for key in ("peak_extra_mib", "output_mib", "inputs_mib"))]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated groups of {','.join(GROUPS)}")
    parser.add_argument("--sizes", default="", help="comma-separated n_q = n_g of the k-reciprocal runs")
    parser.add_argument("--quick", action="store_true", help="small sizes, for trial runs")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default results/bench_reranking[-quick])")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        print(json.dumps(worker(Config(**json.loads(args.worker)))))
        return
    only = [g for g in args.only.split(",") if g]
    unknown = set(only) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; known: {GROUPS}")
    import torch

    rows = []
    for cfg in configs(args.quick, only, [int(s) for s in args.sizes.split(",") if s]):
        result = run_one(cfg, args.timeout)
        rows.append({"label": cfg.label, **asdict(cfg), **result})
        shown = {k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}
        print(f"{cfg.label:36s} {shown}", flush=True)
    meta = {
        "command": shlex.join(["python", os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])]),
        "cpu": _cpu_name(),
        "memory_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    stem = args.out or RESULTS / ("bench_reranking-quick" if args.quick else "bench_reranking")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(rows, meta))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
