"""pairsim: deep metric learning from the unified perspective of pair similarity optimization."""

from pairsim.distributed import GlobalPairLoss, ShardedProxyLoss
from pairsim.losses import (
    ArcFaceLoss,
    CircleLoss,
    ContrastiveLoss,
    CosFaceLoss,
    MultiSimilarityLoss,
    NormFaceLoss,
    NTXentLoss,
    PairLoss,
    ProxyAnchorLoss,
    SoftmaxLoss,
    TripletLoss,
    UnifiedLoss,
    create_loss,
    list_losses,
    register_loss,
)

__version__ = "0.1.0"

__all__ = [
    "ArcFaceLoss",
    "CircleLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "GlobalPairLoss",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "NormFaceLoss",
    "PairLoss",
    "ProxyAnchorLoss",
    "ShardedProxyLoss",
    "SoftmaxLoss",
    "TripletLoss",
    "UnifiedLoss",
    "__version__",
    "create_loss",
    "list_losses",
    "register_loss",
]
