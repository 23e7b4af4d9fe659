"""``pairsim eval``: evaluate an embedding model or saved embeddings; writes JSON and a Markdown table.

Two inputs:

- ``pairsim eval EMBEDDINGS.npz [--protocol ...]``: arrays ``embeddings`` and ``labels``, and as
  the protocol needs them ``query_embeddings``, ``query_labels`` (query/gallery retrieval; re-ID),
  ``camera_ids``, ``query_camera_ids`` (re-ID), ``pairs`` ``(P, 2)`` and ``is_same`` ``(P,)``
  (verification; without them every pair of the labelled set is scored).
- ``pairsim eval CHECKPOINT DATA [--split test]``: a trainer checkpoint and a registered data set
  (``pairsim.data.list_datasets()``); the split's images are embedded, then evaluated
  leave-one-out (retrieval) or over all pairs (verification).

Revisited Oxford / Paris (Easy, Medium and Hard mAP and mP@k, junk ignored): ``pairsim eval
EMBEDDINGS.npz --revisited GND.json`` with arrays ``query_embeddings`` and ``embeddings`` (the gallery),
or ``pairsim eval QUERIES.npz --gallery GALLERY.npz --revisited GND.json`` (each file's ``embeddings``),
in the ground truth's query and gallery orders. GND.json: see docs/evaluation.md; the official pickle is
read only with ``--trust-pickle``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from pathlib import Path
from typing import Any

import numpy as np

from pairsim._io import write_text_atomic
from pairsim.cli._console import print_table
from pairsim.data.splits import SplitSpec
from pairsim.evaluation import (
    RevisitedScores,
    all_pair_similarities,
    clustering_scores,
    load_revisited_ground_truth,
    pair_similarities,
    reid_metrics,
    retrieval_metrics,
    revisited_map_from_embeddings,
    verification_scores,
)

PROTOCOLS = ("retrieval", "reid", "verification")
#: The default ``--ks``: recall@k of retrieval, mP@k of the Revisited Oxford / Paris protocols (as in the paper).
DEFAULT_KS = {"retrieval": (1, 2, 4, 8), "revisited": (1, 5, 10)}
#: Above this many pairs, "all pairs" verification asks for listed pairs instead (memory ~ 9 bytes a pair).
MAX_ALL_PAIRS = 200_000_000


def register(subparsers: Any) -> None:
    """Add the ``eval`` sub-command."""
    parser = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint on a data set, or saved embeddings (.npz)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="EMBEDDINGS.npz, or a trainer CHECKPOINT (.pt)")
    parser.add_argument("data", nargs="?", help="data set name, with a CHECKPOINT")
    parser.add_argument(
        "--protocol", choices=PROTOCOLS, default="retrieval", help="what to measure (default retrieval)"
    )
    parser.add_argument("--split", default="test", help="data set split, with a CHECKPOINT (default: test)")
    parser.add_argument("--root", default=None, help="data set cache directory or user folder, with a CHECKPOINT")
    parser.add_argument("--max-classes", type=int, default=None, help="evaluate on a subset of the split's classes")
    parser.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help="seed of the class split (default: the checkpoint's data.split_seed when it names DATA, else 0)",
    )
    parser.add_argument(
        "--test-ratio",
        type=float,
        default=None,
        help="share of test classes (default: the checkpoint's data.test_ratio when it names DATA, else 0.5)",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="inference precision, with a CHECKPOINT (auto: bf16 and channels-last where measured faster; "
        "fp32: the exact path, channels-first)",
    )
    parser.add_argument(
        "--ks", type=int, nargs="+", default=None, help="k of recall@k (retrieval; 1 2 4 8) or mP@k (revisited; 1 5 10)"
    )
    parser.add_argument("--max-rank", type=int, default=50, help="length of the CMC curve (reid)")
    parser.add_argument("--method", choices=("exact", "faiss", "hnsw"), default="exact", help="k-NN (retrieval)")
    parser.add_argument("--clustering", action="store_true", help="also k-means NMI / AMI (retrieval)")
    parser.add_argument(
        "--revisited",
        metavar="GND",
        default=None,
        help="Revisited Oxford / Paris ground truth (JSON, see docs/evaluation.md): Easy / Medium / Hard mAP and mP@k",
    )
    parser.add_argument("--gallery", default=None, help="GALLERY.npz (its embeddings), with --revisited")
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="with --revisited: read an official .pkl ground truth (restricted to plain data and numpy arrays)",
    )
    parser.add_argument("--out", default="eval", help="output path prefix: writes OUT.json and OUT.md")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, write ``OUT.json`` and ``OUT.md``, print the table; returns 0, or 2 on bad input."""
    started = time.perf_counter()
    protocol = check_protocol(args)
    revisited = evaluate_revisited(args) if protocol == "revisited" else None
    metrics = revisited.as_dict() if revisited is not None else evaluate(load_inputs(args), args)
    report = {
        "command": command_line(args),
        "source": args.source,
        "data": args.data,
        "protocol": protocol,
        "seconds": round(time.perf_counter() - started, 3),
        # NaN (a TAR at a FAR too small for the number of pairs) and the +inf "reject all"
        # threshold are not JSON: written as null.
        "metrics": {k: v if math.isfinite(v) else None for k, v in metrics.items()},
    }
    out = Path(args.out)
    title = f"{protocol} evaluation of {args.source}" + (f" on {args.data}" if args.data else "")
    write_text_atomic(f"{out}.json", json.dumps(report, indent=2, allow_nan=False) + "\n")
    if revisited is not None:
        columns, rows = revisited_rows(revisited)
        write_text_atomic(f"{out}.md", markdown_grid(title, columns, rows))
        print_table(title, columns, rows)
    else:
        write_text_atomic(f"{out}.md", markdown_table(metrics, title))
        rows = [(name, format_value(name, value)) for name, value in metrics.items()]
        print_table(title, ("metric", "value"), rows)
    print(f"wrote {out}.json and {out}.md")
    return 0


def command_line(args: argparse.Namespace) -> str:
    """The ``pairsim eval`` command that reproduces this run, every option explicit."""
    if args.revisited is not None:
        words = ["pairsim", "eval", args.source, *(["--gallery", args.gallery] if args.gallery else [])]
        words += ["--revisited", args.revisited, *(["--trust-pickle"] if args.trust_pickle else [])]
        words += ["--ks", *map(str, ks_of(args, "revisited"))]
        return " ".join(shlex.quote(w) for w in [*words, "--out", args.out])
    words = ["pairsim", "eval", args.source, *([args.data] if args.data else []), "--protocol", args.protocol]
    if args.data:
        words += ["--split", args.split, "--batch-size", str(args.batch_size)]
        words += ["--root", args.root] if args.root else []
        words += ["--max-classes", str(args.max_classes)] if args.max_classes else []
        words += ["--split-seed", str(args.split_seed)] if args.split_seed is not None else []
        words += ["--test-ratio", str(args.test_ratio)] if args.test_ratio is not None else []
    words += ["--ks", *map(str, ks_of(args, "retrieval")), "--max-rank", str(args.max_rank), "--method", args.method]
    words += ["--clustering"] if args.clustering else []
    return " ".join(shlex.quote(w) for w in [*words, "--out", args.out])


def ks_of(args: argparse.Namespace, protocol: str) -> tuple[int, ...]:
    """``--ks``, or the protocol's default."""
    return tuple(args.ks) if args.ks else DEFAULT_KS[protocol]


def check_protocol(args: argparse.Namespace) -> str:
    """The protocol to run: ``revisited`` with ``--revisited``, else ``--protocol``; options that do not fit fail."""
    if args.revisited is None:
        extra = [name for name, given in (("--gallery", args.gallery), ("--trust-pickle", args.trust_pickle)) if given]
        if extra:
            raise ValueError(f"{' and '.join(extra)} only go with --revisited GND.json")
        return str(args.protocol)
    if args.protocol != "retrieval":
        raise ValueError(f"--revisited is a protocol of its own; drop --protocol {args.protocol}")
    if Path(args.source).suffix != ".npz" or args.data is not None:
        raise ValueError("--revisited evaluates saved embeddings: give EMBEDDINGS.npz (or --gallery), and no DATA")
    return "revisited"


def evaluate_revisited(args: argparse.Namespace) -> RevisitedScores:
    """Revisited Oxford / Paris scores of the ``.npz`` queries against the gallery, under the ground truth."""
    ground_truth = load_revisited_ground_truth(args.revisited, trust_pickle=args.trust_pickle)
    source = read_npz(Path(args.source))
    if args.gallery is None:
        missing = [name for name in ("query_embeddings", "embeddings") if name not in source]
        if missing:
            raise ValueError(
                f"{args.source} has no array {missing[0]!r} (it has {sorted(source)}); give query_embeddings and "
                "embeddings (the gallery), or the gallery in --gallery GALLERY.npz"
            )
        queries, gallery = source["query_embeddings"], source["embeddings"]
    else:
        gallery_arrays = read_npz(Path(args.gallery))
        if "embeddings" not in gallery_arrays:
            raise ValueError(f"{args.gallery} has no array 'embeddings' (it has {sorted(gallery_arrays)})")
        name = "query_embeddings" if "query_embeddings" in source else "embeddings"
        if name not in source:
            raise ValueError(f"{args.source} has no array 'embeddings' or 'query_embeddings' (it has {sorted(source)})")
        queries, gallery = source[name], gallery_arrays["embeddings"]
    return revisited_map_from_embeddings(queries, gallery, ground_truth, ks_of(args, "revisited"))


def revisited_rows(scores: RevisitedScores) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """Columns and one row per protocol (Easy, Medium, Hard): mAP, mP@k and the number of queries scored."""
    columns = ("protocol", "mAP", *(f"mP@{k}" for k in scores.ks), "queries")
    rows = []
    for name in ("easy", "medium", "hard"):
        p = getattr(scores, name)
        values = [format_value("map", p.map), *(format_value("mp", p.mp_at_k[k]) for k in scores.ks)]
        rows.append((name.capitalize(), *values, str(p.num_queries)))
    return columns, rows


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (object arrays refused: they would be pickles)."""
    with np.load(path) as npz:
        return {name: npz[name] for name in npz.files}


def load_inputs(args: argparse.Namespace) -> dict[str, np.ndarray]:
    """The arrays to evaluate: read from the ``.npz``, or embedded from checkpoint and data set."""
    source = Path(args.source)
    if source.suffix == ".npz":
        if args.data is not None:
            raise ValueError("an embeddings file takes no DATA argument")
        arrays = read_npz(source)
        for name in ("embeddings", "labels"):
            if name not in arrays:
                raise ValueError(f"{source} has no array {name!r} (it has {sorted(arrays)})")
        return arrays
    if args.data is None:
        raise ValueError("a CHECKPOINT needs a DATA argument (a data set name), or give an EMBEDDINGS.npz")
    from pairsim.data import load_dataset
    from pairsim.models import embed, load_model, resolve_execution

    loaded = load_model(source)  # read once; FileNotFoundError / ValueError naming the file
    model, prep = loaded.model, loaded.preprocessing
    spec = class_split(args, (loaded.config or {}).get("data", {}))
    image_set = load_dataset(
        args.data,
        args.split,
        args.root,
        image_size=prep.image_size,
        max_classes=args.max_classes,
        seed=spec.seed,
        test_ratio=spec.test_ratio,
        folds=spec.folds,
        fold=spec.fold,
    )
    exact = args.precision == "fp32"  # fp32 asked for: the exact path of earlier releases
    execution = resolve_execution(args.precision, not exact, False, phase="inference")
    embeddings = embed(model, image_set.images, batch_size=args.batch_size, execution=execution)
    return {"embeddings": embeddings.numpy(), "labels": np.asarray(image_set.labels)}


def class_split(args: argparse.Namespace, trained_on: dict[str, Any]) -> SplitSpec:
    """The class split to evaluate with: the one the checkpoint was trained with when it names the same data
    set (so that ``test`` is the classes it never saw), with ``--split-seed`` / ``--test-ratio`` overriding.

    Example:
        >>> args = argparse.Namespace(data="folder", split_seed=None, test_ratio=0.3)
        >>> class_split(args, {"name": "folder", "split_seed": 2, "test_ratio": 0.5, "folds": 4, "fold": 1})
        SplitSpec(seed=2, test_ratio=0.3, folds=4, fold=1)
    """
    same = trained_on.get("name") == args.data
    saved = trained_on if same else {}
    return SplitSpec(
        seed=args.split_seed if args.split_seed is not None else int(saved.get("split_seed", 0)),
        test_ratio=args.test_ratio if args.test_ratio is not None else float(saved.get("test_ratio", 0.5)),
        folds=int(saved.get("folds", 1)),
        fold=int(saved.get("fold", 0)),
    )


def evaluate(arrays: dict[str, np.ndarray], args: argparse.Namespace) -> dict[str, float]:
    """Run the protocol on the arrays; a flat metric name -> value mapping."""
    x, y = arrays["embeddings"], arrays["labels"]
    if args.protocol == "retrieval":
        metrics = retrieval_metrics(
            x,
            y,
            arrays.get("query_embeddings"),
            arrays.get("query_labels"),
            ks=ks_of(args, "retrieval"),
            method=args.method,
        )
        if args.clustering:
            clusters = clustering_scores(x, y)
            metrics.update(nmi=clusters.nmi, ami=clusters.ami)
        return metrics
    if args.protocol == "reid":
        missing = [n for n in ("query_embeddings", "query_labels", "camera_ids", "query_camera_ids") if n not in arrays]
        if missing:
            raise ValueError(f"the reid protocol needs arrays {missing} in the .npz (queries and camera ids)")
        reid = reid_metrics(
            arrays["query_embeddings"],
            arrays["query_labels"],
            arrays["query_camera_ids"],
            x,
            y,
            arrays["camera_ids"],
            max_rank=args.max_rank,
        )
        out = {f"rank_{k}": reid.cmc[k - 1] for k in (1, 5, 10, 20) if k <= len(reid.cmc)}
        out.update(map=reid.map, minp=reid.minp, num_queries=float(reid.num_queries))
        out["num_skipped_queries"] = float(reid.num_skipped_queries)
        return out
    if "pairs" in arrays:
        if "is_same" not in arrays:
            raise ValueError("the .npz has pairs but no is_same array")
        scores, same = pair_similarities(x, arrays["pairs"]), arrays["is_same"].astype(bool)
    else:
        if len(x) * (len(x) - 1) // 2 > MAX_ALL_PAIRS:
            raise ValueError(f"{len(x)} embeddings make too many pairs; give listed pairs / is_same in the .npz")
        scores, same_t = all_pair_similarities(x, y)
        same = same_t.numpy()
    v = verification_scores(scores, same)
    out = {"auc": v.auc, "best_accuracy": v.best_accuracy, "best_threshold": v.best_threshold}
    out.update({f"tar_at_far_{far:.0e}": tar for far, tar in v.tar_at_far.items()})
    out.update(num_genuine=float(v.num_genuine), num_impostor=float(v.num_impostor))
    return out


def markdown_table(metrics: dict[str, float], title: str) -> str:
    """A two-column Markdown table; counts print as integers, NaN as "n/a".

    Example:
        >>> print(markdown_table({"map_at_r": 0.5, "num_queries": 10.0}, "t"), end="")
        ### t
        <BLANKLINE>
        | metric | value |
        |---|---:|
        | map_at_r | 0.5000 |
        | num_queries | 10 |
    """
    lines = [f"### {title}", "", "| metric | value |", "|---|---:|"]
    lines += [f"| {name} | {format_value(name, value)} |" for name, value in metrics.items()]
    return "\n".join(lines) + "\n"


def markdown_grid(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A Markdown table of formatted cells, the first column left-aligned.

    Example:
        >>> print(markdown_grid("t", ("protocol", "mAP"), [("Easy", "0.5000")]), end="")
        ### t
        <BLANKLINE>
        | protocol | mAP |
        |---|---:|
        | Easy | 0.5000 |
    """
    lines = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def format_value(name: str, value: float) -> str:
    """A metric as shown: counts (``num_*``) as integers, NaN as ``n/a``, others with 4 decimals.

    Example:
        >>> format_value("num_queries", 10.0), format_value("auc", 0.98765), format_value("tar", float("nan"))
        ('10', '0.9877', 'n/a')
    """
    if math.isnan(value):
        return "n/a"
    return str(int(value)) if name.startswith("num_") else f"{value:.4f}"
