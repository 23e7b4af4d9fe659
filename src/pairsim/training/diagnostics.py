"""The Circle Loss paper's diagnostics of a batch: where ``s_p`` and ``s_n`` are (Fig. 4) and how many
anchors' similarity pairs lie outside the decision circle of Eq. 8 (Fig. 5)."""

from __future__ import annotations

import torch
from torch import Tensor

from pairsim.functional.circle import circle_decision_margin
from pairsim.functional.pairs import Pairs

QUANTILES = (0.1, 0.5, 0.9)
# torch.quantile refuses inputs above 2**24 elements; a strided subsample keeps the estimate cheap.
MAX_QUANTILE_INPUT = 1 << 20


def hardest_pairs(pairs: Pairs) -> tuple[Tensor, Tensor]:
    """Each valid anchor's hardest similarity pair: its largest ``s_n`` and its smallest ``s_p``.

    An anchor's pair lies inside the Eq. 8 circle only if its hardest one does, so these are the
    points of the paper's Fig. 5 scatter.

    Args:
        pairs: ``(B, M)`` similarities with positive and negative masks.

    Returns:
        ``(s_n, s_p)``, both ``(V,)`` for the ``V`` anchors with a positive and a negative.

    Example:
        >>> sim = torch.tensor([[1.0, 0.8, 0.1, 0.3]])
        >>> pos = torch.tensor([[False, True, False, False]])
        >>> s_n, s_p = hardest_pairs(Pairs(sim, pos, ~pos & torch.tensor([[False, True, True, True]])))
        >>> s_n.tolist(), s_p.tolist()
        ([0.30000001192092896], [0.800000011920929])
    """
    sim = pairs.sim.detach().float()
    s_n = sim.masked_fill(~pairs.neg, float("-inf")).amax(dim=1)  # (B,)
    s_p = sim.masked_fill(~pairs.pos, float("inf")).amin(dim=1)  # (B,)
    valid = pairs.valid
    return s_n[valid], s_p[valid]


def _summary(prefix: str, values: Tensor) -> dict[str, float]:
    if values.numel() == 0:
        return {}
    step = max(1, values.numel() // MAX_QUANTILE_INPUT)
    q = torch.quantile(values[::step], torch.tensor(QUANTILES, dtype=values.dtype, device=values.device))
    out = {f"{prefix}_mean": float(values.mean())}
    out.update({f"{prefix}_q{int(level * 100)}": float(v) for level, v in zip(QUANTILES, q.tolist(), strict=True)})
    return out


def similarity_diagnostics(pairs: Pairs, m: float) -> dict[str, float]:
    """Mean and 10/50/90% quantiles of all ``s_p`` and ``s_n`` of a batch, and the share of anchors whose
    hardest pair lies outside the decision circle ``s_n^2 + (s_p - 1)^2 = 2 m^2`` (Eq. 8).

    Args:
        pairs: ``(B, M)`` similarities with positive and negative masks (as the loss saw them).
        m: the relaxation margin of the circle.

    Returns:
        ``sp_mean, sp_q10, sp_q50, sp_q90``, the same for ``sn``, and ``outside_circle`` (in ``[0, 1]``);
        keys without data (no positives, say) are left out.

    Example:
        >>> sim = torch.tensor([[1.0, 0.9, 0.0], [0.9, 1.0, 0.5]])
        >>> pos = torch.tensor([[False, True, False], [True, False, False]])
        >>> neg = torch.tensor([[False, False, True], [False, False, True]])
        >>> d = similarity_diagnostics(Pairs(sim, pos, neg), m=0.25)
        >>> round(d["sp_mean"], 2), round(d["sn_mean"], 2), d["outside_circle"]
        (0.9, 0.25, 0.5)
    """
    sim = pairs.sim.detach().float()
    out = _summary("sp", sim[pairs.pos])
    out.update(_summary("sn", sim[pairs.neg]))
    s_n, s_p = hardest_pairs(pairs)
    if s_n.numel():
        out["outside_circle"] = float((circle_decision_margin(s_n, s_p, m) > 0).float().mean())
    return out
