"""The main job: train Circle loss on hangul-fonts, compare with the pretrained baseline on held-out
classes, and write ``metrics.json`` and a self-contained ``report.html``."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairsim.data.base import ImageSet
from pairsim.data.sampler import PKSampler
from pairsim.functional.pairs import batch_pairs
from pairsim.training.config import TrainConfig, to_dict
from pairsim.training.diagnostics import hardest_pairs
from pairsim.training.evaluate import RETRIEVAL_KEYS, embed_images, retrieval_scores
from pairsim.training.metrics_log import read_metrics
from pairsim.training.run import first_classes
from pairsim.training.trainer import Trainer

SCATTER_BATCHES = 16


@dataclass(frozen=True)
class DemoResult:
    """Held-out metrics of the trained model and of the pretrained baseline, with the run's timings."""

    trained: dict[str, float]
    baseline: dict[str, float]
    seconds: dict[str, float]
    metrics_path: Path
    report_path: Path


def load_demo_data(config: TrainConfig, eval_classes: int, progress: bool) -> tuple[ImageSet, ImageSet]:
    """The training split and ``eval_classes`` held-out classes of ``config.data``."""
    from pairsim.data import load_dataset

    d = config.data
    train = load_dataset(d.name, "train", d.root, image_size=d.image_size, max_classes=d.max_classes, progress=progress)
    held_out = load_dataset(d.name, d.eval_split, d.root, image_size=d.image_size, max_classes=eval_classes)
    return train, held_out


@torch.no_grad()
def final_pairs(trainer: Trainer, image_set: ImageSet, use_loss: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hardest ``(s_n, s_p)`` per anchor over a few P-K batches of ``image_set`` with the final model.

    ``use_loss``: take the pairs as the loss sees them (class proxies in the class-level paradigm);
    otherwise the batch's own pairs (the only ones held-out classes have).
    """
    cfg = trainer.config.sampler
    sampler = PKSampler(image_set.labels, cfg.classes_per_batch, cfg.samples_per_class, seed=seed)
    s_n_all, s_p_all = [], []
    for step in range(min(SCATTER_BATCHES, len(sampler))):
        index = sampler.batch(step)
        embeddings = embed_images(trainer.model, image_set.images[index])
        labels = torch.from_numpy(image_set.labels[index].astype(np.int64))
        loss = trainer.pair_loss if use_loss else None
        pairs = loss.make_pairs(embeddings, labels, None, None) if loss is not None else None
        s_n, s_p = hardest_pairs(pairs if pairs is not None else batch_pairs(embeddings, labels))
        s_n_all.append(s_n.numpy())
        s_p_all.append(s_p.numpy())
    return np.concatenate(s_n_all), np.concatenate(s_p_all)


def retrieval_examples(
    embeddings: torch.Tensor, image_set: ImageSet, queries: int = 8, k: int = 8, seed: int = 0
) -> list[Any]:
    """``queries`` random held-out queries with their ``k`` nearest other images."""
    from pairsim.evaluation import knn
    from pairsim.report import RetrievalExample

    picked = np.random.default_rng(seed).choice(len(image_set.labels), size=queries, replace=False)
    found = knn(embeddings[picked], embeddings, k + 1)
    examples = []
    for row, q in enumerate(picked):
        order = [int(i) for i in found.indices[row].tolist() if int(i) != q][:k]
        sims = found.scores[row][[int(i) != q for i in found.indices[row].tolist()]][:k]
        examples.append(
            RetrievalExample(
                query=image_set.images[q],
                query_key=image_set.class_keys[image_set.labels[q]],
                neighbours=image_set.images[order],
                neighbour_keys=tuple(image_set.class_keys[image_set.labels[i]] for i in order),
                similarities=np.asarray(sims.tolist()),
            )
        )
    return examples


def run_demo(
    config: TrainConfig, eval_classes: int = 1000, progress: bool = True, say: Callable[[str], None] = print
) -> DemoResult:
    """Train ``config``, evaluate trained model and pretrained baseline on ``eval_classes`` held-out classes.

    Writes ``OUT/metrics.json`` and ``OUT/report.html`` (``OUT = config.out_dir``); the training run
    itself (checkpoints, metrics log, resolved config) goes to ``OUT/train``.
    """
    started = time.perf_counter()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_config = dataclasses.replace(config, out_dir=str(out / "train"))
    say(f"loading data set {config.data.name} ...")
    train_set, held_out = load_demo_data(config, eval_classes, progress)
    seconds = {"data": time.perf_counter() - started}
    say(
        f"training: {train_set.num_classes} classes, {len(train_set.labels)} images; held-out: "
        f"{held_out.num_classes} classes, {len(held_out.labels)} images of {held_out.images.shape[-1]} px"
    )
    periodic = first_classes(held_out, config.data.eval_max_classes)
    trainer = Trainer(train_config, train_set, periodic, progress=progress)

    tick = time.perf_counter()
    baseline = retrieval_scores(embed_images(trainer.model, held_out.images, features=True), held_out.labels)
    seconds["baseline_eval"] = time.perf_counter() - tick
    say("pretrained baseline (frozen features): " + _fmt(baseline))

    result = trainer.run()
    seconds["train"] = result.seconds

    tick = time.perf_counter()
    embeddings = embed_images(trainer.model, held_out.images, config.eval_batch_size)
    trained = retrieval_scores(embeddings, held_out.labels)
    seconds["final_eval"] = time.perf_counter() - tick
    say("trained model: " + _fmt(trained))

    # The demo ends where a retrieval user starts: the held-out images in a searchable index.
    from pairsim.index import build_demo_index

    tick = time.perf_counter()
    build_demo_index(result.last_checkpoint, held_out, out / "index", embeddings=embeddings.numpy(), say=say)
    seconds["index"] = time.perf_counter() - tick

    tick = time.perf_counter()
    from pairsim.training.demo_report import build_demo_report

    scatter = [
        ("training classes", *final_pairs(trainer, train_set, use_loss=True, seed=config.seed + 1)),
        ("held-out classes", *final_pairs(trainer, held_out, use_loss=False, seed=config.seed + 1)),
    ]
    records = read_metrics(out / "train" / "metrics.jsonl")
    examples = retrieval_examples(embeddings, held_out, seed=config.seed)
    seconds["report"] = time.perf_counter() - tick  # updated below once the file is written
    seconds["total"] = time.perf_counter() - started
    metrics = {
        "trained": trained,
        "baseline_pretrained": baseline,
        "data_set": config.data.name,
        "train_classes": train_set.num_classes,
        "train_images": len(train_set.labels),
        "held_out_classes": held_out.num_classes,
        "held_out_images": len(held_out.labels),
        "image_size": int(held_out.images.shape[-1]),
        "steps": result.steps,
        "seconds": seconds,
        "threads": torch.get_num_threads(),
        "config": to_dict(train_config),
    }
    report = build_demo_report(out / "report.html", metrics, records, scatter, examples, config.diagnostic_m)
    seconds["report"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - started
    metrics_path = out / "metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=2) + "\n")
    return DemoResult(trained, baseline, seconds, metrics_path, report)


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in RETRIEVAL_KEYS)
