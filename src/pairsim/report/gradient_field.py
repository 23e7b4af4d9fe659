"""Losses side by side on the ``(s_n, s_p)`` plane: gradient arrows, loss contours, decision boundary.

Fig. 1 and Fig. 2 of Sun et al. (CVPR 2020) for any loss. The report takes plain arrays, so it does
not depend on the losses: :mod:`pairsim.losses.geometry` computes them (``gradient_field``,
``decision_boundary_margin``) and the caller copies them into :class:`GradientPanel`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pairsim.report.plots import _png, _pyplot, _text_fonts

# At most this many arrows along each axis: a 41 x 41 grid is drawn every third point.
MAX_ARROWS_PER_AXIS = 15
TARGET = (0.0, 1.0)  # (s_n, s_p): the optimum of Section 2, s_n -> 0 and s_p -> 1


@dataclass(frozen=True, eq=False)
class GradientPanel:
    """One loss on the ``(s_n, s_p)`` plane, as plain arrays of one grid shape ``(H, W)``.

    Attributes:
        title: the loss's name.
        subtitle: its hyper-parameters, e.g. ``"m=0.25, gamma=256"``.
        s_n: ``(H, W)`` between-class similarity of each grid point (the x axis), as from
            ``numpy.meshgrid`` (varying along columns).
        s_p: ``(H, W)`` within-class similarity (the y axis, varying along rows).
        loss: ``(H, W)`` the loss of a single pair at each point.
        descent_s_n: ``(H, W)`` ``-dL/ds_n``, the direction optimisation moves ``s_n``.
        descent_s_p: ``(H, W)`` ``-dL/ds_p``.
        boundary: ``(H, W)`` a margin whose zero level is the decision boundary, or ``None`` if the
            loss has none (then none is drawn).
    """

    title: str
    subtitle: str
    s_n: np.ndarray
    s_p: np.ndarray
    loss: np.ndarray
    descent_s_n: np.ndarray
    descent_s_p: np.ndarray
    boundary: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = np.shape(self.s_n)
        if len(shape) != 2 or min(shape) < 2:
            raise ValueError(f"{self.title}: s_n must be a 2-D grid of at least 2 x 2 points, got shape {shape}")
        arrays = {"s_p": self.s_p, "loss": self.loss, "descent_s_n": self.descent_s_n, "descent_s_p": self.descent_s_p}
        if self.boundary is not None:
            arrays["boundary"] = self.boundary
        for name, array in arrays.items():
            if np.shape(array) != shape:
                raise ValueError(f"{self.title}: {name} has shape {np.shape(array)}, s_n has {shape}")


def gradient_field_plot(panels: Sequence[GradientPanel]) -> bytes:
    """One subplot per loss, side by side: the paper's Fig. 1 / Fig. 2 for each.

    Each subplot has ``s_n`` on the x axis and ``s_p`` on the y axis, as in the paper, and shows:
    the negative gradient as arrows (scaled to the panel's largest one, whose size is printed, so
    that the lengths compare within a panel: equal everywhere for losses optimising
    ``(s_n - s_p)``, shrinking towards the optimum for Circle loss), the loss's level sets (colour
    is ``log(1 + L)``, so that the scale factors' large values do not swamp the picture), the
    decision boundary as a bold line where the panel has one, and the target ``(0, 1)``.

    Args:
        panels: one :class:`GradientPanel` per loss, drawn left to right.

    Returns:
        PNG bytes.

    Raises:
        ValueError: if ``panels`` is empty.
    """
    if not panels:
        raise ValueError("gradient_field_plot needs at least one panel")
    plt = _pyplot()
    with plt.rc_context({"font.family": _text_fonts()}):
        fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels), 4.6), squeeze=False)
        for ax, panel in zip(axes[0], panels, strict=True):
            _draw_panel(fig, ax, panel)
        fig.tight_layout()
        return _png(fig)


def _draw_panel(fig: Any, ax: Any, panel: GradientPanel) -> None:
    s_n, s_p = np.asarray(panel.s_n, dtype=float), np.asarray(panel.s_p, dtype=float)
    shade = np.log1p(np.maximum(np.asarray(panel.loss, dtype=float), 0.0))  # (H, W)
    if np.ptp(shade) > 0:
        filled = ax.contourf(s_n, s_p, shade, levels=12, cmap="viridis", alpha=0.75)
        ax.contour(s_n, s_p, shade, levels=filled.levels, colors="white", linewidths=0.4, alpha=0.6)
        fig.colorbar(filled, ax=ax, fraction=0.046, pad=0.03, label="log(1 + loss)")
    largest = _draw_arrows(
        ax, s_n, s_p, np.asarray(panel.descent_s_n, dtype=float), np.asarray(panel.descent_s_p, dtype=float)
    )
    if panel.boundary is not None and _crosses_zero(panel.boundary):
        ax.contour(s_n, s_p, panel.boundary, levels=[0.0], colors="black", linewidths=2.6)
        ax.plot([], [], color="black", lw=2.6, label="decision boundary")
    star = {"marker": "*", "markersize": 14, "color": "tab:red", "markeredgecolor": "white", "ls": ""}
    # clip_on=False: on the usual [-1, 1]^2 square the target sits on the top edge.
    ax.plot(*TARGET, **star, zorder=5, clip_on=False, label="target (0, 1)")
    ax.set_xlim(s_n.min(), s_n.max())
    ax.set_ylim(s_p.min(), s_p.max())
    ax.set_aspect("equal")
    ax.set_xlabel("$s_n$")
    ax.set_ylabel("$s_p$")
    arrows = "zero gradient everywhere" if largest == 0.0 else f"longest arrow: |∇L| = {largest:.3g}"
    ax.set_title("\n".join(line for line in (panel.title, panel.subtitle, arrows) if line), fontsize=10)
    ax.legend(loc="lower right", fontsize=7, framealpha=0.8)


def _draw_arrows(ax: Any, s_n: np.ndarray, s_p: np.ndarray, d_n: np.ndarray, d_p: np.ndarray) -> float:
    """Quiver of ``(d_n, d_p)`` on a thinned grid, the longest arrow 0.9 of its spacing; returns that length."""
    rows = slice(None, None, max(1, math.ceil(s_n.shape[0] / MAX_ARROWS_PER_AXIS)))
    cols = slice(None, None, max(1, math.ceil(s_n.shape[1] / MAX_ARROWS_PER_AXIS)))
    x, y, u, v = s_n[rows, cols], s_p[rows, cols], d_n[rows, cols], d_p[rows, cols]  # (h, w) each
    size = np.hypot(u, v)  # (h, w)
    moving = np.isfinite(size) & (size > 0)
    if not moving.any():
        return 0.0
    largest = float(size[moving].max())
    step = min(np.ptp(x) / max(x.shape[1] - 1, 1), np.ptp(y) / max(y.shape[0] - 1, 1))
    ax.quiver(
        x[moving],
        y[moving],
        u[moving],
        v[moving],
        angles="xy",
        scale_units="xy",
        scale=largest / (0.9 * step),
        width=0.006,
        color="white",
        edgecolor="black",
        linewidth=0.3,
        minlength=0.0,  # vanishing gradients draw nothing, not quiver's default dot
        zorder=3,
    )
    return largest


def _crosses_zero(margin: np.ndarray) -> bool:
    finite = np.asarray(margin, dtype=float)
    finite = finite[np.isfinite(finite)]
    return finite.size > 0 and finite.min() < 0.0 < finite.max()
