"""Loss benchmark: pairsim against pytorch-metric-learning (PML), same inputs, same run.

Each configuration is measured in a fresh subprocess with ``torch.set_num_threads(2)``:
forward + backward time (median of ``--repeats`` after ``--warmup`` calls) and peak extra memory
(peak resident set size during one call, minus the resident size just before it; the peak is reset
through ``/proc/self/clear_refs``). Bare GEMMs give the floor: ``(B x D)(D x C)`` forward and
backward for class-level losses, the three ``B x B x D`` GEMMs of a pair-wise loss; ``gemm`` is torch's
``@`` (MKL), ``gemm-onednn`` the same GEMMs through oneDNN, as the Circle fast path runs them on CPU
(:func:`pairsim.functional.circle_kernels.matmul_nt`).

Pair-wise rows make one small call (B = 8) before the measured ones, for every implementation: it
loads what a process loads once (numba's compiled kernels, ~50 MiB and ~0.4 s), which is not memory
a training step needs.

    python benchmarks/bench_losses.py                 # everything (the lead runs this on a quiet machine)
    python benchmarks/bench_losses.py --quick --only circle-pair,gemm-pair
    python benchmarks/bench_losses.py --only circle-pair,gemm-pair --out benchmarks/results/bench_losses-pair

Results go to ``benchmarks/results/bench_losses[-quick].{json,md}`` (or the ``--out`` stem) with the exact command
line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
GROUPS = ["circle-pair", "gemm-pair", "circle-class", "cosface", "arcface", "gemm-class", "ntxent"]
D = 512
K = 4  # samples per class in pair-wise batches (P-K sampling)


@dataclass(frozen=True)
class Config:
    group: str
    impl: str  # pairsim | pairsim-plain | pml | gemm | gemm-onednn
    batch: int
    classes: int = 0  # class-level only
    params: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        size = f"B={self.batch}" + (f" C={self.classes:.0e}".replace("+0", "") if self.classes else "")
        return f"{self.group} {size}"


def configs(quick: bool, only: list[str]) -> list[Config]:
    pair_sizes = [256, 1024] if quick else [256, 1024, 4096]
    class_sizes = [10_000, 100_000] if quick else [10_000, 100_000, 1_000_000]
    out: list[Config] = []
    for b in pair_sizes:
        for impl in ["pairsim", "pairsim-plain", "pml"]:
            out.append(Config("circle-pair", impl, b, params={"m": 0.4, "gamma": 80.0}))
        out += [Config("gemm-pair", impl, b) for impl in ["gemm", "gemm-onednn"]]
    for c in class_sizes:
        # The plain path at C = 1e6 needs ~10 GB: measured on request only (--with-plain-1e6).
        impls = ["pairsim", "pairsim-plain"] if c < 1_000_000 else ["pairsim"]
        out += [Config("circle-class", impl, 256, c, {"m": 0.25, "gamma": 256.0}) for impl in impls]
        for name, params in [("cosface", {"m": 0.35, "gamma": 64.0}), ("arcface", {"m": 0.5, "gamma": 64.0})]:
            out += [Config(name, impl, 256, c, params) for impl in ["pairsim", "pml"]]
        out.append(Config("gemm-class", "gemm", 256, c))
    out += [Config("ntxent", impl, 512, params={"temperature": 0.07}) for impl in ["pairsim", "pml"]]
    return [c for c in out if not only or c.group in only]


# ----------------------------------------------------------------------------- worker side


def _rss_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field_name} not in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _build(cfg: Config) -> Callable[[], None]:
    """Inputs and one forward + backward call, all allocated before the measurement starts."""
    import torch

    torch.manual_seed(0)
    x = torch.randn(cfg.batch, D, requires_grad=True)
    labels = torch.randint(0, cfg.classes, (cfg.batch,)) if cfg.classes else torch.arange(cfg.batch) // K
    if cfg.impl in ("gemm", "gemm-onednn"):
        return _gemm(cfg, x.detach(), onednn=cfg.impl == "gemm-onednn")
    p = cfg.params
    loss: torch.nn.Module
    if cfg.impl == "pml":
        from pytorch_metric_learning import losses as pml

        if cfg.group == "circle-pair":
            loss = pml.CircleLoss(m=p["m"], gamma=p["gamma"])
        elif cfg.group == "cosface":
            loss = pml.CosFaceLoss(num_classes=cfg.classes, embedding_size=D, margin=p["m"], scale=p["gamma"])
        elif cfg.group == "arcface":  # PML's margin is in degrees
            degrees = p["m"] * 180.0 / 3.141592653589793
            loss = pml.ArcFaceLoss(num_classes=cfg.classes, embedding_size=D, margin=degrees, scale=p["gamma"])
        elif cfg.group == "ntxent":
            loss = pml.NTXentLoss(temperature=p["temperature"])
        else:
            raise ValueError(f"no PML counterpart for {cfg.group}")
    else:
        from pairsim import create_loss

        name = {"circle-pair": "circle", "circle-class": "circle"}.get(cfg.group, cfg.group)
        kwargs: dict[str, Any] = dict(p)
        if cfg.classes:
            kwargs.update(num_classes=cfg.classes, embedding_dim=D)
        if name == "circle":
            kwargs["fast_path"] = False if cfg.impl == "pairsim-plain" else None
        loss = create_loss(name, **kwargs)

    def step() -> None:
        loss(x, labels).backward()
        x.grad = None
        loss.zero_grad(set_to_none=True)

    if cfg.group == "circle-pair":  # one small call first: what a process loads once (see the docstring)
        small = x[:8].detach().requires_grad_(True)
        loss(small, labels[:8]).backward()
    return step


def _gemm(cfg: Config, x: Any, onednn: bool) -> Callable[[], None]:
    import torch

    if onednn:
        from pairsim.functional.circle_kernels import matmul_nt

        if cfg.classes:
            raise ValueError("gemm-onednn is measured for the pair-wise GEMMs only")
        g = torch.randn(cfg.batch, cfg.batch)

        def step_onednn() -> None:
            _ = matmul_nt(x, x)  # (B, B) similarities
            _ = matmul_nt(g, x.T)  # gradient wrt the anchors
            _ = matmul_nt(g.T, x.T)  # gradient wrt the references

        return step_onednn
    if cfg.classes:
        w = torch.randn(cfg.classes, D, requires_grad=True)
        xg = x.clone().requires_grad_(True)
        g = torch.randn(cfg.batch, cfg.classes)

        def step() -> None:
            (xg @ w.T).backward(g)  # (B, C) forward, then dX = G W and dW = G^T X
            xg.grad, w.grad = None, None

        return step
    g = torch.randn(cfg.batch, cfg.batch)

    def step_pair() -> None:
        _ = x @ x.T  # (B, B) similarities
        _ = g @ x  # gradient wrt the anchors
        _ = g.T @ x  # gradient wrt the references

    return step_pair


def worker(cfg: Config, warmup: int, repeats: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(2)
    step = _build(cfg)
    base = _rss_kib("VmRSS")
    _reset_peak()
    step()  # the first call: its peak is the memory a training step needs
    peak = _rss_kib("VmHWM") - base
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "peak_extra_mib": peak / 1024}


# ----------------------------------------------------------------------------- driver side


def run_one(cfg: Config, warmup: int, repeats: int, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", json.dumps(asdict(cfg)), "--warmup", str(warmup)]
    cmd += ["--repeats", str(repeats)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Loss benchmark",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"Machine: {meta['cpu']}, torch {meta['torch']}, 2 threads; {meta['date']}.",
        "Time: forward + backward, median of repeats (ms). Memory: peak RSS during one call minus RSS before it.",
    ]
    groups = {r["group"] for r in rows}
    if "circle-pair" in groups:
        lines.append(
            "Pair-wise rows: one small call (B = 8) per implementation before the measured ones, for what a process"
            " loads once (numba's compiled kernels)."
        )
    if groups & {"gemm-pair", "gemm-class"}:
        lines.append(
            "gemm: torch's `@` (MKL); gemm-onednn: the same GEMMs through oneDNN, as pairsim's Circle fast path"
            " runs them (`circle_kernels.matmul_nt`)."
        )
    lines += [
        "",
        "| config | impl | median ms | min ms | peak extra MiB | PML / this (time) | PML / this (memory) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    pml = {r["label"]: r for r in rows if r["impl"] == "pml" and "median_ms" in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['label']} | {r['impl']} | error: {r['error']} | | | | |")
            continue
        ref = pml.get(r["label"])
        t = f"{ref['median_ms'] / r['median_ms']:.1f}x" if ref and r["impl"] != "pml" else ""
        m = f"{ref['peak_extra_mib'] / max(r['peak_extra_mib'], 1e-3):.1f}x" if ref and r["impl"] != "pml" else ""
        cells = [r["label"], r["impl"], f"{r['median_ms']:.1f}", f"{r['min_ms']:.1f}", f"{r['peak_extra_mib']:.0f}"]
        lines.append("| " + " | ".join([*cells, t, m]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated groups of {','.join(GROUPS)}")
    parser.add_argument(
        "--impl", default="", help="comma-separated implementations (pairsim,pairsim-plain,pml,gemm,gemm-onednn)"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats, for trial runs")
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    parser.add_argument("--out", type=Path, default=None, help="output stem (default results/bench_losses[-quick])")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 7)
    if args.worker is not None:
        print(json.dumps(worker(Config(**json.loads(args.worker)), warmup, repeats)))
        return
    only = [g for g in args.only.split(",") if g]
    unknown = set(only) - set(GROUPS)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; known: {GROUPS}")
    impls = [i for i in args.impl.split(",") if i]
    import torch

    rows = []
    for cfg in configs(args.quick, only):
        if impls and cfg.impl not in impls:
            continue
        result = run_one(cfg, warmup, repeats, args.timeout)
        row = {"label": cfg.label, **asdict(cfg), **result}
        rows.append(row)
        shown = {k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}
        print(f"{cfg.label:28s} {cfg.impl:14s} {shown}", flush=True)
    meta = {
        "command": shlex.join(["python", os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])]),
        "cpu": _cpu_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    stem = args.out or RESULTS / ("bench_losses-quick" if args.quick else "bench_losses")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(rows, meta))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
