"""Loss modules: thin ``nn.Module`` holders over :mod:`pairsim.functional`, and their registry."""

from pairsim.losses.arcface_loss import ArcFaceLoss
from pairsim.losses.base import PairLoss
from pairsim.losses.circle_loss import CircleLoss
from pairsim.losses.contrastive_loss import ContrastiveLoss
from pairsim.losses.cosface_loss import CosFaceLoss
from pairsim.losses.multi_similarity_loss import MultiSimilarityLoss
from pairsim.losses.normface_loss import NormFaceLoss
from pairsim.losses.ntxent_loss import NTXentLoss
from pairsim.losses.proxy_anchor_loss import ProxyAnchorLoss
from pairsim.losses.registry import create_loss, get_loss_class, list_losses, register_loss
from pairsim.losses.search_space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchParam,
    SearchSpace,
    Suggester,
    search_space_for,
)
from pairsim.losses.softmax_loss import SoftmaxLoss
from pairsim.losses.triplet_loss import TripletLoss
from pairsim.losses.unified_loss import UnifiedLoss

__all__ = [
    "ArcFaceLoss",
    "CategoricalParam",
    "CircleLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "FloatParam",
    "IntParam",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "NormFaceLoss",
    "PairLoss",
    "ProxyAnchorLoss",
    "SearchParam",
    "SearchSpace",
    "SoftmaxLoss",
    "Suggester",
    "TripletLoss",
    "UnifiedLoss",
    "create_loss",
    "get_loss_class",
    "list_losses",
    "register_loss",
    "search_space_for",
]
