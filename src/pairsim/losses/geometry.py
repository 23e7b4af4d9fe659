"""Any loss on the ``(s_n, s_p)`` plane: its value, its gradient field and its decision boundary.

Fig. 1 and Fig. 2 of Sun et al. (CVPR 2020) look at a loss in the toy scenario of "only a single
``s_p`` and ``s_n``": one anchor with one within-class and one between-class similarity. This
module puts every registered loss in that scenario through its own code (no formula is written
again here), so that losses optimising ``(s_n - s_p)`` (triplet, AM-Softmax / CosFace, the unified
loss of Eq. 1) and Circle loss (``alpha_n s_n - alpha_p s_p``, Eq. 4-6) can be drawn side by side:

- :func:`pair_plane_loss`: the loss of such an anchor, for a whole grid of pairs at once;
- :func:`gradient_field`: its value and negative gradient ``(-dL/ds_n, -dL/ds_p)`` by autograd,
  the direction in which optimisation moves the pair (the arrows of Fig. 1);
- :func:`decision_boundary_margin`: the quantity whose zero level is the decision boundary, for
  losses that say where theirs is (see that function for why it is not derived here).

The arrays go to :func:`pairsim.report.gradient_field_plot` as plain numpy (the report does not
import losses).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from pairsim.functional.pairs import Pairs
from pairsim.losses.base import PairLoss


class GradientField(NamedTuple):
    """A loss and the direction optimisation moves a ``(s_n, s_p)`` pair, on a grid.

    Attributes:
        loss: the loss of each grid pair, the shape of the grids.
        descent_s_n: ``-dL/ds_n``, same shape (negative: ``s_n`` is pushed down).
        descent_s_p: ``-dL/ds_p``, same shape (positive: ``s_p`` is pulled up).
    """

    loss: Tensor
    descent_s_n: Tensor
    descent_s_p: Tensor


def plane_grid(steps: int = 41, low: float = -1.0, high: float = 1.0) -> tuple[Tensor, Tensor]:
    """A float64 meshgrid over ``[low, high]^2`` with ``s_n`` along columns and ``s_p`` along rows.

    This is the layout of Fig. 1 and 2 (``s_n`` on the x axis, ``s_p`` on the y axis) and of
    matplotlib's ``X, Y`` arguments.

    Args:
        steps: points per axis, at least 2.
        low: smallest similarity.
        high: largest similarity.

    Returns:
        ``(s_n, s_p)``, both ``(steps, steps)``: ``s_n[i, j]`` is the ``j``-th value, ``s_p[i, j]``
        the ``i``-th.

    Raises:
        ValueError: if ``steps < 2`` or ``low >= high``.
    """
    if steps < 2 or not low < high:
        raise ValueError(f"need steps >= 2 and low < high, got steps={steps}, low={low}, high={high}")
    axis = torch.linspace(low, high, steps, dtype=torch.float64)  # (steps,)
    s_p, s_n = torch.meshgrid(axis, axis, indexing="ij")  # (steps, steps) each
    return s_n, s_p


def one_pair_anchors(s_n: Tensor, s_p: Tensor) -> Pairs:
    """``G`` anchors, each with one positive ``s_p`` (column 0) and one negative ``s_n`` (column 1).

    Args:
        s_n: ``(G,)`` between-class similarities.
        s_p: ``(G,)`` within-class similarities.

    Returns:
        ``Pairs`` with ``sim (G, 2)``, ``pos = [[True, False]] * G`` and ``neg = ~pos``.
    """
    sim = torch.stack([s_p, s_n], dim=1)  # (G, 2)
    pos = torch.zeros_like(sim, dtype=torch.bool)  # (G, 2)
    pos[:, 0] = True
    return Pairs(sim, pos, ~pos)


def pair_plane_loss(loss: PairLoss, s_n: Tensor, s_p: Tensor) -> Tensor:
    """The loss of one anchor with a single positive ``s_p`` and a single negative ``s_n``, per pair.

    The toy scenario of Fig. 1 and 2 of Sun et al., computed by the loss's own code on hand-built
    :class:`~pairsim.functional.pairs.Pairs` (the pair source is skipped, so the paradigm the loss
    was built in does not matter, and ``s`` is whatever the loss scores: cosine similarities, or
    inner products for the plain softmax loss). The value is that of a one-anchor batch:

    - a loss with a :meth:`~pairsim.losses.base.PairLoss.per_anchor` is evaluated on ``G``
      anchors at once; its batch loss is a reduction of per-anchor losses, which for a single
      anchor (one positive, one negative, so one triplet for triplet mining ``"all"``) is the
      per-anchor loss itself;
    - a loss defined only over the batch (no ``per_anchor``: Proxy-Anchor reduces over proxies)
      is evaluated by its own ``reduce`` on ``G`` one-anchor batches (vectorised with
      ``torch.func.vmap`` where the loss allows it, else one by one). For Proxy-Anchor with its
      two proxies this is ``softplus(-alpha (s_p - delta)) + softplus(alpha (s_n + delta)) / 2``,
      the ``1 / |P|`` of its Eq. 4 averaging the negative term over both proxies.

    Args:
        loss: a registered loss, in any paradigm it supports.
        s_n: ``(G,)`` between-class similarities.
        s_p: ``(G,)`` within-class similarities, same shape, dtype and device.

    Returns:
        ``(G,)`` losses, attached to the graph of ``s_n`` and ``s_p``.

    Raises:
        ValueError: if the shapes differ or are not 1-D, or if the loss implements neither
            ``per_anchor`` nor ``reduce``.

    Example:
        >>> from pairsim.losses.triplet_loss import TripletLoss
        >>> s_n, s_p = torch.tensor([0.5, 0.1]), torch.tensor([0.5, 0.8])
        >>> [round(v, 4) for v in pair_plane_loss(TripletLoss(margin=0.2), s_n, s_p).tolist()]
        [0.2, 0.0]
    """
    if s_n.dim() != 1 or s_n.shape != s_p.shape:
        raise ValueError(f"s_n and s_p must be 1-D of the same shape, got {tuple(s_n.shape)} and {tuple(s_p.shape)}")
    pairs = one_pair_anchors(s_n, s_p)
    try:
        return loss.per_anchor(pairs)  # (G,)
    except NotImplementedError:
        pass
    try:
        return _one_anchor_batches(loss, pairs)  # (G,)
    except NotImplementedError as error:
        raise ValueError(
            f"{type(loss).__name__} implements neither per_anchor nor reduce: it cannot be evaluated on the (s_n, s_p) "
            "plane"
        ) from error


def _one_anchor_batches(loss: PairLoss, pairs: Pairs) -> Tensor:
    """``loss.reduce`` of each row of ``pairs`` as a batch of its own: ``(G,)``."""

    def reduce_one(sim: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
        return loss.reduce(Pairs(sim, pos, neg))  # sim, pos, neg: (1, 2)

    rows = (pairs.sim[:, None, :], pairs.pos[:, None, :], pairs.neg[:, None, :])  # (G, 1, 2) each
    try:
        return torch.func.vmap(reduce_one)(*rows)  # (G,)
    except NotImplementedError:
        raise  # a subclass of RuntimeError: the loss has no reduce, which no loop can mend
    except RuntimeError:
        # Data-dependent Python control flow (``bool(tensor)``, ``.item()``) cannot be vmapped.
        return torch.stack([reduce_one(*row) for row in zip(*rows, strict=True)])  # (G,)


def gradient_field(loss: PairLoss, s_n_grid: Tensor | None = None, s_p_grid: Tensor | None = None) -> GradientField:
    """The loss and its negative gradient at every ``(s_n, s_p)`` pair of a grid (Fig. 1 and 2).

    The gradient is autograd's through the loss's own code (:func:`pair_plane_loss`), in float64.
    For Circle loss that is Eq. 9-10 (``dL/ds_n = Z gamma alpha_n``, ``dL/ds_p = -Z gamma alpha_p``
    for a single pair), since its per-anchor loss detaches the self-paced weights ``alpha``;
    for a loss optimising ``(s_n - s_p)`` both components have equal size (Section 2).

    Args:
        loss: a registered loss, in any paradigm it supports.
        s_n_grid: between-class similarities, any shape; ``None`` takes :func:`plane_grid`.
        s_p_grid: within-class similarities, the shape of ``s_n_grid``; ``None`` with it.

    Returns:
        A :class:`GradientField` of float64 tensors with the grids' shape, detached.

    Raises:
        ValueError: if only one grid is given or their shapes differ (or see :func:`pair_plane_loss`).

    Example:
        >>> from pairsim.losses.circle_loss import CircleLoss
        >>> field = gradient_field(CircleLoss(m=0.25, gamma=256.0))
        >>> field.loss.shape, field.loss.dtype
        (torch.Size([41, 41]), torch.float64)
        >>> bool((field.descent_s_n <= 0).all() and (field.descent_s_p >= 0).all())
        True
    """
    if s_n_grid is None and s_p_grid is None:
        s_n_grid, s_p_grid = plane_grid()
    if s_n_grid is None or s_p_grid is None or s_n_grid.shape != s_p_grid.shape:
        raise ValueError("give both s_n_grid and s_p_grid, of the same shape, or neither")
    shape = s_n_grid.shape
    s_n = s_n_grid.detach().to(torch.float64).reshape(-1).requires_grad_(True)  # (G,)
    s_p = s_p_grid.detach().to(torch.float64).reshape(-1).requires_grad_(True)  # (G,)
    with torch.enable_grad():
        values = pair_plane_loss(loss, s_n, s_p)  # (G,)
        # Each anchor's loss depends on its own pair only, so the gradient of the sum is per pair.
        grad_n, grad_p = torch.autograd.grad(values.sum(), (s_n, s_p), allow_unused=True)
    grad_n = torch.zeros_like(s_n) if grad_n is None else grad_n  # a loss blind to s_n
    grad_p = torch.zeros_like(s_p) if grad_p is None else grad_p
    return GradientField(values.detach().reshape(shape), (-grad_n).reshape(shape), (-grad_p).reshape(shape))


def decision_boundary_margin(loss: PairLoss, s_n: Tensor, s_p: Tensor) -> Tensor | None:
    """The quantity whose zero level is the loss's decision boundary, if the loss defines one.

    In the paper's sense the boundary is where the argument of the loss's softplus or hinge is
    zero: ``s_n - s_p + m = 0`` for triplet and CosFace-like losses (Section 2), the circle
    ``s_n^2 + (s_p - 1)^2 = 2 m^2`` for Circle loss (Eq. 8). That is a property of the formula,
    not of the loss values, and no rule read off the values holds for every loss: the level
    ``L = log 2`` is the boundary of the single-softplus losses, but not of the hinge losses
    (whose zero level is a region) nor of the losses summing two terms (Multi-Similarity,
    Proxy-Anchor, contrastive), where no single boundary exists. So it is not guessed here: a
    loss states its boundary through an optional method

    ``decision_margin(self, s_n: Tensor, s_p: Tensor) -> Tensor``

    zero on the boundary and negative on the side the loss drives pairs to (the convention of
    :func:`pairsim.functional.circle.circle_decision_margin`); a loss without it has none drawn.

    Args:
        loss: any loss.
        s_n: between-class similarities, any shape.
        s_p: within-class similarities, the same shape.

    Returns:
        The margin, the shape of ``s_n``; ``None`` if the loss has no ``decision_margin``.

    Raises:
        ValueError: if ``decision_margin`` returns something other than a tensor of that shape.

    Example:
        >>> from pairsim.losses import CircleLoss, MultiSimilarityLoss
        >>> decision_boundary_margin(CircleLoss(m=0.25), torch.tensor([0.0, 0.5]), torch.tensor([1.0, 0.5])).tolist()
        [-0.125, 0.375]
        >>> decision_boundary_margin(MultiSimilarityLoss(), torch.zeros(2), torch.ones(2)) is None
        True
    """
    hook = getattr(loss, "decision_margin", None)
    if hook is None:
        return None
    margin = hook(s_n, s_p)
    if not isinstance(margin, Tensor) or margin.shape != s_n.shape:
        got = tuple(margin.shape) if isinstance(margin, Tensor) else type(margin).__name__
        raise ValueError(
            f"{type(loss).__name__}.decision_margin must return a tensor of shape {tuple(s_n.shape)}, got {got}"
        )
    return margin
