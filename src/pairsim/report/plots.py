"""The report's figures, each drawn with matplotlib into PNG bytes (no display needed)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RetrievalExample:
    """One held-out query and its nearest neighbours among the other held-out images.

    Attributes:
        query: ``(C, H, W)`` uint8 image.
        query_key: its class key.
        neighbours: ``(k, C, H, W)`` uint8 images, nearest first.
        neighbour_keys: their class keys.
        similarities: ``(k,)`` cosine similarities to the query.
    """

    query: np.ndarray
    query_key: str
    neighbours: np.ndarray
    neighbour_keys: tuple[str, ...]
    similarities: np.ndarray

    @property
    def correct(self) -> list[bool]:
        """Whether each neighbour shares the query's class."""
        return [key == self.query_key for key in self.neighbour_keys]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: works without a display
    import matplotlib.pyplot as plt

    return plt


# Fallbacks for class keys outside Latin (Hangul syllables, CJK, emoji); the first one installed is used.
TEXT_FONTS = ("DejaVu Sans", "NanumGothic", "UnDotum", "Baekmuk Gulim", "WenQuanYi Zen Hei", "Noto Color Emoji")


def _text_fonts() -> list[str]:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    return [name for name in TEXT_FONTS if name in installed]


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(r["step"], r[key]) for r in records if key in r]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*rows, strict=True)
    return np.asarray(steps), np.asarray(values, dtype=float)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    return np.convolve(np.pad(values, (window - 1, 0), mode="edge"), kernel, mode="valid")


def loss_and_precision_plot(train: Sequence[dict[str, Any]], evals: Sequence[dict[str, Any]]) -> bytes:
    """Training loss (raw and smoothed) and the periodic evaluation's precision@1 (validation classes) over steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    steps, loss = _series(train, "loss")
    ax.plot(steps, loss, color="tab:blue", alpha=0.25, lw=0.8)
    ax.plot(steps, _smooth(loss, max(1, len(loss) // 50)), color="tab:blue", label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss", color="tab:blue")
    twin = ax.twinx()
    e_steps, p1 = _series(evals, "precision_at_1")
    twin.plot(e_steps, p1, "o-", color="tab:green", label="validation precision@1")
    twin.set_ylim(0, 1)
    twin.set_ylabel("precision@1", color="tab:green")
    fig.legend(loc="upper center", ncol=2, frameon=False)
    return _png(fig)


def similarity_plot(train: Sequence[dict[str, Any]]) -> bytes:
    """``s_p`` and ``s_n`` of the training batches over steps, mean and 10-90% band (the paper's Fig. 4)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    for prefix, color, name in (("sp", "tab:red", "$s_p$ (within class)"), ("sn", "tab:blue", "$s_n$ (between)")):
        steps, mean = _series(train, f"{prefix}_mean")
        _, low = _series(train, f"{prefix}_q10")
        _, high = _series(train, f"{prefix}_q90")
        window = max(1, len(mean) // 100)
        ax.fill_between(steps, _smooth(low, window), _smooth(high, window), color=color, alpha=0.15, lw=0)
        ax.plot(steps, _smooth(mean, window), color=color, label=name)
    steps, outside = _series(train, "outside_circle")
    ax.plot(steps, _smooth(outside, max(1, len(outside) // 50)), color="0.4", ls="--", label="share outside circle")
    ax.set_xlabel("step")
    ax.set_ylabel("cosine similarity")
    ax.set_ylim(-0.5, 1.05)
    ax.legend(loc="lower right", frameon=False)
    return _png(fig)


def decision_scatter_plot(groups: Sequence[tuple[str, np.ndarray, np.ndarray]], m: float) -> bytes:
    """Scatter of ``(s_n, s_p)`` pairs with the decision circle of Eq. 8 (the paper's Fig. 5).

    Args:
        groups: ``(label, s_n, s_p)`` per colour.
        m: relaxation margin; the circle has centre ``(0, 1)`` and radius ``sqrt(2) m``.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    for (label, s_n, s_p), color in zip(groups, ("tab:green", "tab:orange", "tab:purple"), strict=False):
        ax.scatter(s_n, s_p, s=5, alpha=0.4, color=color, label=f"{label} ({len(s_n)})", lw=0)
    theta = np.linspace(0, 2 * np.pi, 200)
    r = np.sqrt(2) * m
    ax.plot(r * np.cos(theta), 1 + r * np.sin(theta), color="k", lw=1.2, label=f"Eq. 8 circle, m={m:g}")
    ax.plot([-1, 1], [-1, 1], color="0.6", lw=0.8, ls=":")
    ax.set_xlim(-0.6, 1.0)
    ax.set_ylim(-0.2, 1.05)
    ax.set_aspect("equal")
    ax.set_xlabel("$s_n$ (hardest negative)")
    ax.set_ylabel("$s_p$ (hardest positive)")
    ax.legend(loc="lower left", frameon=False, fontsize=8)
    return _png(fig)


def retrieval_grid_plot(examples: Sequence[RetrievalExample]) -> bytes:
    """Held-out queries (left column) and their nearest neighbours; green frame correct, red wrong."""
    plt = _pyplot()
    with plt.rc_context({"font.family": _text_fonts()}):
        return _retrieval_grid(plt, examples)


def _retrieval_grid(plt: Any, examples: Sequence[RetrievalExample]) -> bytes:
    k = max(len(e.neighbour_keys) for e in examples)
    fig, axes = plt.subplots(len(examples), k + 1, figsize=(1.1 * (k + 1), 1.25 * len(examples)), squeeze=False)
    for row, example in zip(axes, examples, strict=True):
        tiles = [(example.query, f"query {example.query_key}", "black")]
        tiles += [
            (image, f"{sim:.2f}", "tab:green" if ok else "tab:red")
            for image, sim, ok in zip(example.neighbours, example.similarities, example.correct, strict=True)
        ]
        for ax, (image, title, color) in zip(row, tiles, strict=False):
            pixels = image.transpose(1, 2, 0)
            ax.imshow(pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=255)
            ax.set_title(title, fontsize=7, color="black" if color == "black" else color)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(3 if color != "black" else 1)
        for ax in row[len(tiles) :]:
            ax.axis("off")
    fig.tight_layout(pad=0.3)
    return _png(fig)


def pyplot() -> Any:
    """matplotlib's pyplot with the report's settings (Agg backend, fonts), for figures drawn elsewhere."""
    return _pyplot()


def figure_png(fig: Any) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    return _png(fig)
