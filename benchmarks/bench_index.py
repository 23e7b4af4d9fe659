"""Index benchmark: exact vs approximate search at N x D, and a load test of ``pairsim serve``.

Part 1 (``ann``): ``N`` database and ``--queries`` held-out query embeddings of synthetic classes
(centre + Gaussian noise, as in bench_evaluation.py; ``--data uniform`` for random unit vectors, the
hardest case for approximate search). For the exact index (``IndexFlatIP``) and for HNSW and IVF at
several search breadths: build time, single-query latency p50/p99 and queries/s (queries one at a
time, as the service sends them), batched queries/s, and recall@10 against the exact top-10.
Indexes are made by ``pairsim.index.vectors.build_faiss``, the code the index directory uses.

Part 2 (``load``): an index directory of ``N`` random unit vectors (one stored image) with a random
small-CNN model (D = 512, 64 px RGB), ``pairsim serve`` started as a subprocess on 127.0.0.1, then
``--clients`` threads each posting ``/search?k=10`` with a 64 px PNG for ``--duration`` seconds.
Reported: requests/s, latency p50/p99, and errors (any non-200 answer or failed request).

    python benchmarks/bench_index.py                    # full: N = 100,000, D = 512, 32 clients x 30 s
    python benchmarks/bench_index.py --quick            # N = 20,000, 200 queries, 32 clients x 5 s

Results go to ``benchmarks/results/bench_index[-quick].{json,md}`` with the exact command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]


def embeddings(n: int, dim: int, data: str, seed: int, per_class: int = 20) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors: clustered or uniform on the sphere.

    Clustered: ``~n / per_class`` classes, each vector its class centre plus Gaussian noise of the
    same norm, so two vectors of a class have cosine ~0.5 and unrelated ones ~0 (+-0.05 at D = 512),
    like a trained embedding: a query's 10 nearest are items of its class, not noise-level ties.
    Uniform: no structure at all, the hardest case for approximate search.
    """
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    if data == "clustered":
        centres = rng.standard_normal((max(1, n // per_class), dim), dtype=np.float32)
        x = centres[rng.integers(0, len(centres), n)] + x
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000.0, q))


def measure(index: Any, queries: np.ndarray, exact_ids: np.ndarray | None, k: int) -> dict[str, float]:
    """Single-query latency and QPS with one faiss thread (as ``pairsim serve`` runs it: concurrent
    requests use the cores), batched QPS with all threads, recall@k against ``exact_ids``."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    times, found = [], []
    for q in queries:
        start = time.perf_counter()
        _, ids = index.search(q[None], k)
        times.append(time.perf_counter() - start)
        found.append(ids[0])
    faiss.omp_set_num_threads(threads)
    start = time.perf_counter()
    index.search(queries, k)
    batched = len(queries) / (time.perf_counter() - start)
    got = np.stack(found)
    pairs = zip(got, got if exact_ids is None else exact_ids, strict=True)
    return {
        "p50_ms": percentile_ms(times, 50),
        "p99_ms": percentile_ms(times, 99),
        "qps": len(queries) / sum(times),
        "batched_qps": batched,
        "recall_at_10": float(np.mean([len(set(a) & set(b)) / k for a, b in pairs])),
    }


SWEEP: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    ("flat", "exact", (0,)),
    ("hnsw", "efSearch", (32, 64, 128, 256)),
    ("ivf", "nprobe", (8, 16, 32, 64)),
)


def ann(n: int, dim: int, num_queries: int, data: str, k: int = 10) -> list[dict[str, Any]]:
    import faiss

    from pairsim.index import vectors as fv

    x = embeddings(n + num_queries, dim, data, seed=n + dim)
    db, queries = x[:n], x[n:]
    ids = np.arange(1, n + 1, dtype=np.int64)
    _, exact_ids = fv.build_faiss("flat", dim, db, ids).search(queries, k)
    rows: list[dict[str, Any]] = []
    for kind, param, values in SWEEP:
        start = time.perf_counter()
        index = fv.build_faiss(kind, dim, db, ids)
        build = time.perf_counter() - start
        inner: Any = faiss.downcast_index(index.index)
        for value in values:
            if kind == "hnsw":
                inner.hnsw.efSearch = value
            elif kind == "ivf":
                inner.nprobe = value
            result = measure(index, queries, exact_ids, k)
            setting = "exact" if kind == "flat" else f"{param}={value}"
            rows.append({"data": data, "index": kind, "param": setting, "build_s": build, **result})
            print(json.dumps(rows[-1]), flush=True)
    for row in rows:
        row["speedup"] = row["qps"] / rows[0]["qps"]
    return rows


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_load_index(directory: Path, n: int, dim: int) -> None:
    """An index of ``n`` random vectors sharing one stored image, with a random small-CNN model."""
    import torch
    from PIL import Image

    from pairsim.index import IndexStore, Manifest, NewItem
    from pairsim.index.build import MODEL_FILE, load_model
    from pairsim.index.images import store_image
    from pairsim.models import create_model, model_spec, save_state

    torch.manual_seed(0)
    model = create_model("small-cnn", embedding_dim=dim, in_channels=3)
    model.preprocessing = dataclasses.replace(model.preprocessing, image_size=64)
    with torch.no_grad():
        model.head.linear.bias.zero_()
    checkpoint = directory.parent / "bench-model.pt"
    save_state({"model_spec": model_spec("small-cnn", model), "model": model.state_dict()}, checkpoint)
    loaded = load_model(checkpoint)
    manifest = Manifest(
        "small-cnn",
        loaded.fingerprint,
        "-",
        str(checkpoint),
        dim,
        dataclasses.asdict(loaded.preprocessing),
        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    store = IndexStore.create(directory, manifest, kind="auto")
    save_state({"model_spec": loaded.spec, "model": loaded.model.state_dict()}, directory / MODEL_FILE)
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(buffer, format="PNG")
    path, digest = store_image(store.images_dir, buffer.getvalue(), ".png")
    vectors = embeddings(n, dim, "uniform", seed=1)
    store.add(vectors, [NewItem(path, digest, f"l{i % 1000}") for i in range(n)])


def load_test(n: int, dim: int, clients: int, duration: float) -> dict[str, Any]:
    import httpx

    work = Path(tempfile.mkdtemp(prefix="pairsim-bench-"))
    start = time.perf_counter()
    make_load_index(work / "index", n, dim)
    setup = time.perf_counter() - start
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-m", "pairsim", "serve", str(work / "index"), "--port", str(port)]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError(f"server did not start: {server.stderr.read() if server.stderr else ''}")
            time.sleep(0.2)
        rng = np.random.default_rng(2)
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
        query = buffer.getvalue()
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop_at = time.monotonic() + duration

        def client() -> None:
            with httpx.Client(base_url=url, timeout=60) as c:
                while time.monotonic() < stop_at:
                    t0 = time.perf_counter()
                    try:
                        r = c.post("/search", params={"k": 10}, files={"image": ("q.png", query, "image/png")})
                        ok = r.status_code == 200 and len(r.json()["results"]) == 10
                        problem = "" if ok else f"HTTP {r.status_code}"
                    except httpx.HTTPError as error:
                        problem = type(error).__name__
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                        if problem:
                            errors.append(problem)

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        "items": n,
        "dim": dim,
        "clients": clients,
        "duration_s": round(elapsed, 2),
        "requests": len(latencies),
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile_ms(latencies, 50),
        "p99_ms": percentile_ms(latencies, 99),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "index_setup_s": round(setup, 1),
    }
    print(json.dumps(result), flush=True)
    return result


def markdown(report: dict[str, Any]) -> str:
    lines = [f"### Index search, N = {report['n']:,}, D = {report['dim']}, {report['queries']} queries", ""]
    lines += [f"`{report['command']}`", "", f"{report['machine']}", ""]
    lines += ["| data | index | setting | build s | p50 ms | p99 ms | queries/s | batched q/s | recall@10 | x exact |"]
    lines += ["|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["ann"]:
        lines.append(
            f"| {r['data']} | {r['index']} | {r['param']} | {r['build_s']:.1f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['qps']:.0f} | {r['batched_qps']:.0f} | {r['recall_at_10']:.4f} | "
            f"{r['speedup']:.1f} |"
        )
    load = report.get("load")
    if load:
        lines += ["", f"### Load test: {load['clients']} clients x {load['duration_s']} s against `pairsim serve`", ""]
        lines += ["| items | requests | requests/s | p50 ms | p99 ms | errors |", "|---:|---:|---:|---:|---:|---:|"]
        lines.append(
            f"| {load['items']:,} | {load['requests']} | {load['requests_per_s']:.1f} | {load['p50_ms']:.0f} | "
            f"{load['p99_ms']:.0f} | {load['errors']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N = 20,000, 200 queries, 5 s load test")
    parser.add_argument("--n", type=int, default=None)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=None)
    parser.add_argument(
        "--data",
        choices=("clustered", "uniform"),
        nargs="+",
        default=None,
        help="embeddings for the search part (default: both; --quick: clustered)",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=None, help="load test seconds")
    parser.add_argument("--skip-ann", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    n = args.n or (20_000 if args.quick else 100_000)
    num_queries = args.queries or (200 if args.quick else 1000)
    duration = args.duration or (5.0 if args.quick else 30.0)
    data = args.data or (["clustered"] if args.quick else ["clustered", "uniform"])
    import faiss
    import torch

    report: dict[str, Any] = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, faiss {faiss.__version__} "
        f"({faiss.omp_get_max_threads()} OpenMP threads), torch {torch.__version__} ({torch.get_num_threads()} thr.)",
        "n": n,
        "dim": args.dim,
        "data": data,
        "queries": num_queries,
        "per_class": 20,
        "ann": [] if args.skip_ann else [row for d in data for row in ann(n, args.dim, num_queries, d)],
    }
    if not args.skip_load:
        report["load"] = load_test(n, args.dim, args.clients, duration)
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / ("bench_index" + ("-quick" if args.quick else ""))
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    stem.with_suffix(".md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
