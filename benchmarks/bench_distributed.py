"""Sharded class proxies: class-level Circle loss, 1 process against W processes on gloo.

One training step of the loss head: the ranks' embeddings (random ``(B, D)`` leaf tensors standing in
for a backbone's output), forward, backward, an SGD step on the proxies. Configurations, each in fresh
processes:

- ``plain``: ``CircleLoss(num_classes=C)`` in one process (its streaming fast path), all ``C x D`` proxies;
- ``sharded``: ``pairsim.distributed.ShardedProxyLoss`` with W ranks, ``C / W`` proxies each, every rank
  scoring the global batch of ``W x B`` (so W ranks do W times the work of one process per step).

Reported per configuration: step time (median and min over ranks' max), peak resident set size of each
process (``ru_maxrss``: everything, Python and torch included) and its size before the first step, and the
communication per step from the sizes of the collectives (``pairsim.distributed.comm.COMM_LOG``): payload per
collective kind and the bytes a ring algorithm sends per rank. Threads: ``--threads-total`` cores shared
evenly by the ranks.

    python benchmarks/bench_distributed.py             # C = 1e6, B = 256 per rank, D = 512, W in {1, 2}
    python benchmarks/bench_distributed.py --quick     # C = 1e5, 2 timed steps

Results go to ``benchmarks/results/bench_distributed[-quick].{json,md}`` with the exact command line.
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
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """One rank: build the loss, run the steps, report its numbers (rank 0 prints them)."""
    import torch
    import torch.distributed as dist

    from pairsim.distributed import ShardedProxyLoss
    from pairsim.distributed.comm import COMM_LOG
    from pairsim.distributed.heads import CircleHead
    from pairsim.losses import CircleLoss

    rank, world = args.rank, args.world
    torch.set_num_threads(max(1, args.threads_total // world))
    if world > 1:
        dist.init_process_group("gloo", init_method=f"file://{args.rendezvous}", rank=rank, world_size=world)
    torch.manual_seed(rank)
    loss: torch.nn.Module
    if args.impl == "plain":
        loss = CircleLoss(m=0.25, gamma=256.0, num_classes=args.classes, embedding_dim=args.dim)
    else:
        loss = ShardedProxyLoss(CircleHead(m=0.25, gamma=256.0), args.classes, args.dim)
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.1)
    labels = torch.randint(0, args.classes, (args.batch,))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def step() -> float:
        x = torch.randn(args.batch, args.dim, requires_grad=True)
        if world > 1:
            dist.barrier()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=False)
        loss(x, labels).backward()
        optimizer.step()
        if world > 1:
            dist.barrier()
        return time.perf_counter() - start

    for _ in range(args.warmup):
        step()
    COMM_LOG.enabled = True
    times = [step()]
    COMM_LOG.enabled = False
    payload, wire = dict(COMM_LOG.payload), COMM_LOG.wire_bytes(world)
    times += [step() for _ in range(args.repeats - 1)]
    result = {
        "rank": rank,
        "times_s": times,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_steps_bytes": rss_before,
        "proxy_rows": sum(p.shape[0] for p in loss.parameters()),
        "comm_payload_bytes": payload,
        "comm_wire_bytes_per_rank": wire,
        "threads": torch.get_num_threads(),
    }
    if world > 1:
        dist.destroy_process_group()
    return result


def run_config(impl: str, world: int, args: argparse.Namespace) -> dict[str, Any]:
    """Start ``world`` ranks of one configuration and merge their reports."""
    with tempfile.TemporaryDirectory() as tmp:
        common = [sys.executable, __file__, "--impl", impl, "--world", str(world), "--rendezvous", f"{tmp}/rdv"]
        common += ["--classes", str(args.classes), "--batch", str(args.batch), "--dim", str(args.dim)]
        common += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
        common += ["--threads-total", str(args.threads_total)]
        procs = [subprocess.Popen([*common, "--rank", str(r)], stdout=subprocess.PIPE, text=True) for r in range(world)]
        outs = [p.communicate(timeout=args.timeout)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{impl} W={world} failed: {[p.returncode for p in procs]}")
    ranks = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    step_times = [max(r["times_s"][i] for r in ranks) for i in range(args.repeats)]
    return {
        "impl": impl,
        "world": world,
        "classes": args.classes,
        "batch_per_rank": args.batch,
        "dim": args.dim,
        "threads_per_rank": ranks[0]["threads"],
        "step_s_median": statistics.median(step_times),
        "step_s_min": min(step_times),
        "samples_per_s": world * args.batch / statistics.median(step_times),
        "peak_rss_mib": [round(r["peak_rss_bytes"] / 2**20) for r in ranks],
        "rss_before_steps_mib": [round(r["rss_before_steps_bytes"] / 2**20) for r in ranks],
        "proxy_rows": [r["proxy_rows"] for r in ranks],
        "comm_payload_bytes": ranks[0]["comm_payload_bytes"],
        "comm_wire_bytes_per_rank": ranks[0]["comm_wire_bytes_per_rank"],
    }


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Sharded class proxies: class-level Circle loss (m=0.25, gamma=256)",
        "",
        f"`{meta['command']}` on {meta['cpu']}, torch {meta['torch']}, {meta['date']}.",
        "",
        "| impl | W | C | B/rank | D | threads/rank | step s (median / min) | samples/s | peak RSS MiB per rank "
        "| RSS before steps MiB | comm payload per rank | ring bytes sent per rank |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        payload = ", ".join(f"{k} {v / 2**10:.1f} KiB" for k, v in sorted(r["comm_payload_bytes"].items())) or "-"
        lines.append(
            f"| {r['impl']} | {r['world']} | {r['classes']:.0e} | {r['batch_per_rank']} | {r['dim']} "
            f"| {r['threads_per_rank']} | {r['step_s_median']:.3f} / {r['step_s_min']:.3f} | {r['samples_per_s']:.0f} "
            f"| {r['peak_rss_mib']} | {r['rss_before_steps_mib']} | {payload} "
            f"| {r['comm_wire_bytes_per_rank'] / 2**10:.1f} KiB |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="C = 1e5 and 2 timed steps, for trial runs")
    parser.add_argument("--classes", type=int, default=None)
    parser.add_argument("--batch", type=int, default=256, help="embeddings per rank")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--worlds", default="1,2", help="comma-separated world sizes for the sharded loss")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--threads-total", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--out", type=Path, default=None)
    for hidden in ("--impl", "--world", "--rank", "--rendezvous"):
        parser.add_argument(hidden, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.classes = args.classes or (100_000 if args.quick else 1_000_000)
    args.repeats = args.repeats or (2 if args.quick else 5)
    if args.rank is not None:
        args.rank, args.world = int(args.rank), int(args.world)
        print(json.dumps(worker(args)))
        return
    import torch

    rows = [run_config("plain", 1, args)]
    rows += [run_config("sharded", int(w), args) for w in args.worlds.split(",")]
    for row in rows:
        print(json.dumps(row), flush=True)
    meta = {
        "command": shlex.join(["python", os.path.relpath(__file__), *(argv if argv is not None else sys.argv[1:])]),
        "cpu": f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    stem = args.out or RESULTS / ("bench_distributed-quick" if args.quick else "bench_distributed")
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(rows, meta))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")


if __name__ == "__main__":
    main()
