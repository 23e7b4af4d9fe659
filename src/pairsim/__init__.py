"""pairsim: deep metric learning from the unified perspective of pair similarity optimization."""

from pairsim.losses import CircleLoss, PairLoss, UnifiedLoss, create_loss, list_losses, register_loss

__version__ = "0.1.0"

__all__ = [
    "CircleLoss",
    "PairLoss",
    "UnifiedLoss",
    "__version__",
    "create_loss",
    "list_losses",
    "register_loss",
]
