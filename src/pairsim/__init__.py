"""pairsim: deep metric learning from the unified perspective of pair similarity optimization.

The public API, as timm's: losses, models and data sets by name from registries, the evaluator, the
distributed losses, and the retrieval index.

Example:
    >>> import pairsim
    >>> loss = pairsim.create_loss("circle", m=0.25, gamma=64.0)
    >>> "small-cnn" in pairsim.list_models() and "hangul-fonts" in pairsim.list_datasets()
    True
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pairsim._version import __version__
from pairsim.data import ImageSet, list_datasets, load_dataset
from pairsim.distributed import GlobalPairLoss, ShardedProxyLoss
from pairsim.evaluation import retrieval_metrics
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
from pairsim.models import EmbeddingModel, create_model, embed, list_models, load_embedding_model, register_model

if TYPE_CHECKING:
    from pairsim.index import IndexStore, Searcher, add_images, build_index

# The index needs the [serve] extra (Pillow, faiss): imported on first use, so `import pairsim` works without it.
_LAZY = dict.fromkeys(("IndexStore", "Searcher", "add_images", "build_index"), "pairsim.index")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pairsim' has no attribute {name!r}")


__all__ = [
    "ArcFaceLoss",
    "CircleLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "EmbeddingModel",
    "GlobalPairLoss",
    "ImageSet",
    "IndexStore",
    "MultiSimilarityLoss",
    "NTXentLoss",
    "NormFaceLoss",
    "PairLoss",
    "ProxyAnchorLoss",
    "Searcher",
    "ShardedProxyLoss",
    "SoftmaxLoss",
    "TripletLoss",
    "UnifiedLoss",
    "__version__",
    "add_images",
    "build_index",
    "create_loss",
    "create_model",
    "embed",
    "list_datasets",
    "list_losses",
    "list_models",
    "load_dataset",
    "load_embedding_model",
    "register_loss",
    "register_model",
    "retrieval_metrics",
]
