"""The demo's report page: what was trained, how it compares, and the paper's figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pairsim.report import (
    Figure,
    RetrievalExample,
    decision_scatter_plot,
    loss_and_precision_plot,
    metrics_table,
    retrieval_grid_plot,
    similarity_plot,
    write_report,
)
from pairsim.training.evaluate import RETRIEVAL_KEYS


def loss_label(loss: Mapping[str, Any]) -> str:
    """How a configured loss is named on the page and in the summary lines.

    Example:
        >>> loss_label({"name": "circle", "class_level": False})
        'circle loss, pair-wise'
        >>> loss_label({"name": "cosface", "class_level": True})
        'cosface loss, class-level'
    """
    return f"{loss['name']} loss, {'class-level' if loss['class_level'] else 'pair-wise'}"


def demo_figures(
    records: Sequence[dict[str, Any]],
    scatter: Sequence[tuple[str, np.ndarray, np.ndarray]],
    examples: Sequence[RetrievalExample],
    m: float,
) -> list[Figure]:
    """The page's four figures, from the run's metrics log, the final pairs and retrieval examples."""
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    return [
        Figure(
            "Loss and validation precision@1",
            loss_and_precision_plot(train, evals),
            "Training loss per step (faint) and smoothed; precision@1 of the periodic evaluation on validation "
            "classes (a fold of the training classes the run never trains on; the test classes are read once, "
            "at the end).",
        ),
        Figure(
            "s_p and s_n during training (paper Fig. 4)",
            similarity_plot(train),
            "Mean within-class (s_p) and between-class (s_n) cosine similarity of each training batch, with the "
            "10-90% band; dashed: share of anchors whose hardest pair lies outside the Eq. 8 decision circle.",
        ),
        Figure(
            "Final similarity pairs and the decision boundary (paper Fig. 5)",
            decision_scatter_plot(scatter, m),
            "Each point is one anchor's hardest pair (largest s_n, smallest s_p) under the final model, on P-K "
            f"batches of training and of held-out classes; the circle is Circle loss's Eq. 8 boundary at m={m}, "
            "whose target lies inside it, around (0, 1).",
        ),
        Figure(
            "Held-out queries and their 8 nearest neighbours",
            retrieval_grid_plot(examples),
            "First column: a query from a held-out class; then its nearest other images by cosine similarity "
            "(score above each). Green frame: same class, red: another class.",
        ),
    ]


def write_demo_report(path: Path, metrics: dict[str, Any], figures: Sequence[Figure]) -> Path:
    """Write ``report.html`` from the demo's final metrics (timings included) and its figures."""
    config = metrics["config"]
    loss = config["loss"]
    label = loss_label(loss)
    table = metrics_table(
        {
            "pretrained baseline (frozen ImageNet features)": metrics["baseline_pretrained"],
            f"trained ({label})": metrics["trained"],
        },
        RETRIEVAL_KEYS,
    )
    seconds = metrics["seconds"]
    params = ", ".join(f"{k}={v}" for k, v in loss["params"].items())
    facts = {
        "data set": f"{metrics['data_set']}, {metrics['image_size']} px",
        "training": f"{metrics['train_classes']} classes, {metrics['train_images']} images",
        "held-out evaluation": f"{metrics['held_out_classes']} unseen classes, {metrics['held_out_images']} images; "
        "each image queries all the others",
        "model": f"{config['model']['name']} (pretrained={config['model']['pretrained']}), "
        f"D={config['model']['embedding_dim']}",
        "loss": f"{label}, {params}",
        "batches": f"{metrics['steps']} steps of P={config['sampler']['classes_per_batch']} classes x "
        f"K={config['sampler']['samples_per_class']} images",
        "time": ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + f" ({metrics['threads']} threads)",
    }
    gain = metrics["trained"]["precision_at_1"] - metrics["baseline_pretrained"]["precision_at_1"]
    summary = (
        f"Held-out precision@1 {metrics['trained']['precision_at_1']:.3f} after training with {label}, "
        f"{metrics['baseline_pretrained']['precision_at_1']:.3f} for the pretrained baseline ({gain:+.3f}), "
        "on classes never seen in training."
    )
    title = f"pairsim demo: {loss['name']} loss on unseen classes"
    return write_report(path, title, summary, table, facts, list(figures))
