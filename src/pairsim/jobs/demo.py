"""The main job: train Circle loss on hangul-fonts, compare with the pretrained baseline on held-out
classes, and write ``metrics.json``, a self-contained ``report.html`` and a searchable index.

It composes the engines: ``pairsim.training`` trains and evaluates, ``pairsim.index`` indexes the
held-out images, ``pairsim.report`` draws the page (through :mod:`pairsim.jobs.demo_report`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pairsim._io import write_text_atomic
from pairsim.data import ImageSet
from pairsim.data.sampler import PKSampler
from pairsim.data.transforms import AugmentConfig
from pairsim.evaluation import knn
from pairsim.functional.pairs import batch_pairs
from pairsim.index import BuildResult, build_index
from pairsim.jobs.demo_report import demo_figures, loss_label, write_demo_report
from pairsim.models import embed
from pairsim.report import RetrievalExample
from pairsim.training.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    SamplerConfig,
    TrainConfig,
    load_config_with_notes,
    resolve_config,
    to_dict,
)
from pairsim.training.diagnostics import hardest_pairs
from pairsim.training.evaluate import RETRIEVAL_KEYS, retrieval_scores
from pairsim.training.metrics_log import read_metrics
from pairsim.training.run import load_split
from pairsim.training.trainer import Trainer

SCATTER_BATCHES = 16

# The demo's run configuration; configs/hangul-fonts/demo.yaml is the same, for `pairsim train`.
# Chosen for 2 CPU cores and a 5-minute training budget: 64 px (32 px loses too much of the glyphs'
# strokes for ImageNet features), a high learning rate with a cosine decay over few steps, and no
# augmentation (400 x 32 draws visit each of the ~5,000 classes ~2.5 times: far from overfitting).
# 400 steps rather than 500, chosen on the validation classes (2026-12-03): precision@1 0.9835 and MAP@R
# 0.9644 after 400 steps against 0.9814 and 0.9659 after 500.
DEMO_CONFIG = TrainConfig(
    data=DataConfig(name="hangul-fonts", image_size=64, folds=10, eval_max_classes=100),
    model=ModelConfig(name="efficientnet-lite0", embedding_dim=128, pretrained=True),
    loss=LossConfig(name="circle", class_level=False, params={"m": 0.4, "gamma": 80.0}),
    optim=OptimConfig(lr=3e-3, proxy_lr=1e-2, weight_decay=1e-4, warmup_steps=50, final_lr_ratio=0.01),
    sampler=SamplerConfig(classes_per_batch=32, samples_per_class=4),
    augment=AugmentConfig(),
    steps=400,
    seed=0,
    out_dir="runs/demo",
    checkpoint_every=100,
    eval_every=100,
)


@dataclass(frozen=True)
class DemoResult:
    """Held-out metrics of the trained model and of the pretrained baseline, with the run's timings."""

    trained: dict[str, float]
    baseline: dict[str, float]
    seconds: dict[str, float]
    metrics_path: Path
    report_path: Path


def load_demo_data(config: TrainConfig, eval_classes: int, progress: bool) -> tuple[ImageSet, ImageSet, ImageSet]:
    """The training split, the validation classes of the periodic evaluation, and ``eval_classes`` test classes.

    The test classes are read here, for the one final evaluation; training and the choice of ``best.pt``
    see only the validation fold.
    """
    d = config.data
    train = load_split(d, "train", d.max_classes, progress)
    validation = load_split(d, d.eval_split, d.eval_max_classes, progress)
    test = load_split(d, "test", eval_classes, progress)
    return train, validation, test


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
        embeddings = embed(trainer.model, image_set.images[index])
        labels = torch.from_numpy(image_set.labels[index].astype(np.int64))
        loss = trainer.pair_loss if use_loss else None
        pairs = loss.make_pairs(embeddings, labels, None, None) if loss is not None else None
        s_n, s_p = hardest_pairs(pairs if pairs is not None else batch_pairs(embeddings, labels))
        s_n_all.append(s_n.numpy())
        s_p_all.append(s_p.numpy())
    return np.concatenate(s_n_all), np.concatenate(s_p_all)


def retrieval_examples(
    embeddings: torch.Tensor, image_set: ImageSet, queries: int = 8, k: int = 8, seed: int = 0
) -> list[RetrievalExample]:
    """``queries`` random held-out queries with their ``k`` nearest other images."""
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
    itself (checkpoints, metrics log, resolved config) goes to ``OUT/train``, the index to ``OUT/index``.
    """
    started = time.perf_counter()
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_config = dataclasses.replace(config, out_dir=str(out / "train"))
    say(f"loading data set {config.data.name} ...")
    train_set, validation, held_out = load_demo_data(config, eval_classes, progress)
    seconds = {"data": time.perf_counter() - started}
    say(
        f"training: {train_set.num_classes} classes, {len(train_set.labels)} images; validation: "
        f"{validation.num_classes} classes; test (read once, at the end): {held_out.num_classes} classes, "
        f"{len(held_out.labels)} images of {held_out.images.shape[-1]} px"
    )
    trainer = Trainer(train_config, train_set, validation, progress=progress)

    tick = time.perf_counter()
    # Inference under the run's execution settings (auto: bf16, channels-last where measured faster).
    fast = trainer.eval_execution
    baseline = retrieval_scores(embed(trainer.model, held_out.images, features=True, execution=fast), held_out.labels)
    seconds["baseline_eval"] = time.perf_counter() - tick
    say("pretrained baseline (frozen features): " + _fmt(baseline))

    result = trainer.run()
    seconds["train"] = result.seconds

    tick = time.perf_counter()
    embeddings = embed(trainer.model, held_out.images, config.eval_batch_size, execution=fast)
    trained = retrieval_scores(embeddings, held_out.labels)
    seconds["final_eval"] = time.perf_counter() - tick
    say(f"trained model ({loss_label(to_dict(config.loss))}): " + _fmt(trained))

    # The demo ends where a retrieval user starts: the held-out images in a searchable index.
    tick = time.perf_counter()
    build_demo_index(result.last_checkpoint, held_out, out / "index", embeddings=embeddings.numpy(), say=say)
    seconds["index"] = time.perf_counter() - tick

    tick = time.perf_counter()
    scatter = [
        ("training classes", *final_pairs(trainer, train_set, use_loss=True, seed=config.seed + 1)),
        ("held-out classes", *final_pairs(trainer, held_out, use_loss=False, seed=config.seed + 1)),
    ]
    records = read_metrics(out / "train" / "metrics.jsonl")
    examples = retrieval_examples(embeddings, held_out, seed=config.seed)
    figures = demo_figures(records, scatter, examples, config.diagnostic_m)
    # The timings are final here, before the page is written: the page shows the same ones as metrics.json
    # (writing the HTML file itself, a few milliseconds, is the only part left out).
    seconds["report"] = time.perf_counter() - tick
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
        "execution": {"training": trainer.execution.describe(), "inference": fast.describe()},
        "config": to_dict(train_config),
    }
    report = write_demo_report(out / "report.html", metrics, figures)
    metrics_path = out / "metrics.json"
    write_text_atomic(metrics_path, json.dumps(metrics, indent=2) + "\n")
    return DemoResult(trained, baseline, seconds, metrics_path, report)


def build_demo_index(
    checkpoint: str | Path,
    held_out: ImageSet,
    out: str | Path = "runs/demo/index",
    embeddings: np.ndarray | None = None,
    say: Callable[[str], None] = print,
) -> BuildResult:
    """The demo's last step: index the held-out images (replacing an older ``out``) and say how to serve it.

    Args:
        checkpoint: the trained model (the run's ``last.pt``).
        held_out: the held-out image set.
        out: the index directory.
        embeddings: ``(N, D)`` embeddings of ``held_out`` by that model, when already computed.
        say: where the messages go.
    """
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    result = build_index(checkpoint, held_out, out, embeddings=embeddings)
    say(f"indexed {result.added} held-out images in {out} ({result.seconds:.1f} s)")
    say(f"search it:  pairsim search {out} QUERY_IMAGE -k 10")
    say(f"serve it:   pairsim serve {out} --port 8000   (then open http://127.0.0.1:8000/)")
    return result


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {metrics[k]:.4f}" for k in RETRIEVAL_KEYS)


def demo_config(path: str | Path | None, overrides: Sequence[str]) -> tuple[TrainConfig, tuple[str, ...]]:
    """The built-in demo configuration (or the YAML at ``path``) with ``key=value`` overrides, and the notes
    of resolving them (parameters dropped because ``loss.name`` changed)."""
    if path is not None:
        return load_config_with_notes(path, overrides)
    return resolve_config(to_dict(DEMO_CONFIG), overrides)
