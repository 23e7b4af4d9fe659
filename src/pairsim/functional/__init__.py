"""Pure tensor math: similarities, pair sources, per-anchor losses.

Nothing here holds parameters or touches files; the ``nn.Module`` losses in
``pairsim.losses`` are thin holders around these functions.
"""

from pairsim.functional.arcface import arcface_loss, arcface_margin
from pairsim.functional.circle import (
    circle_decision_margin,
    circle_logits,
    circle_loss,
    circle_similarity_grad,
)
from pairsim.functional.circle_streaming import circle_loss_streaming
from pairsim.functional.contrastive import contrastive_loss
from pairsim.functional.cosface import cosface_loss
from pairsim.functional.multi_similarity import multi_similarity_loss
from pairsim.functional.normface import normface_loss
from pairsim.functional.ntxent import ntxent_loss
from pairsim.functional.pairs import Pairs, batch_pairs, label_masks, proxy_pairs
from pairsim.functional.proxy_anchor import proxy_anchor_loss, proxy_anchor_terms
from pairsim.functional.reductions import masked_logsumexp, mean_over_valid
from pairsim.functional.similarity import cosine_similarity_matrix
from pairsim.functional.softmax import inner_product_proxy_pairs, softmax_loss
from pairsim.functional.triplet import triplet_loss
from pairsim.functional.unified import unified_loss

__all__ = [
    "Pairs",
    "arcface_loss",
    "arcface_margin",
    "batch_pairs",
    "circle_decision_margin",
    "circle_logits",
    "circle_loss",
    "circle_loss_streaming",
    "circle_similarity_grad",
    "contrastive_loss",
    "cosface_loss",
    "cosine_similarity_matrix",
    "inner_product_proxy_pairs",
    "label_masks",
    "masked_logsumexp",
    "mean_over_valid",
    "multi_similarity_loss",
    "normface_loss",
    "ntxent_loss",
    "proxy_anchor_loss",
    "proxy_anchor_terms",
    "proxy_pairs",
    "softmax_loss",
    "triplet_loss",
    "unified_loss",
]
