"""Pure tensor math: similarities, pair sources, per-anchor losses.

Nothing here holds parameters or touches files; the ``nn.Module`` losses in
``pairsim.losses`` are thin holders around these functions.
"""

from pairsim.functional.circle import (
    circle_decision_margin,
    circle_logits,
    circle_loss,
    circle_similarity_grad,
)
from pairsim.functional.pairs import Pairs, batch_pairs, label_masks, proxy_pairs
from pairsim.functional.reductions import masked_logsumexp, mean_over_valid
from pairsim.functional.similarity import cosine_similarity_matrix
from pairsim.functional.unified import unified_loss

__all__ = [
    "Pairs",
    "batch_pairs",
    "circle_decision_margin",
    "circle_logits",
    "circle_loss",
    "circle_similarity_grad",
    "cosine_similarity_matrix",
    "label_masks",
    "masked_logsumexp",
    "mean_over_valid",
    "proxy_pairs",
    "unified_loss",
]
