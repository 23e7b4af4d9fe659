"""Loss modules: thin ``nn.Module`` holders over :mod:`pairsim.functional`, and their registry."""

from pairsim.losses.base import PairLoss
from pairsim.losses.circle_loss import CircleLoss
from pairsim.losses.registry import create_loss, get_loss_class, list_losses, register_loss
from pairsim.losses.unified_loss import UnifiedLoss

__all__ = [
    "CircleLoss",
    "PairLoss",
    "UnifiedLoss",
    "create_loss",
    "get_loss_class",
    "list_losses",
    "register_loss",
]
