"""The training loss of a run: the configured loss, made global or sharded when the run has several ranks."""

from __future__ import annotations

from torch import nn

from pairsim.distributed import GlobalPairLoss, create_sharded_loss
from pairsim.losses import create_loss
from pairsim.training.config import TrainConfig
from pairsim.training.parallel import Parallel


def build_loss(config: TrainConfig, num_classes: int, embedding_dim: int, parallel: Parallel) -> nn.Module:
    """The loss module the trainer calls as ``loss(embeddings, labels)``.

    - pair-wise, one process: the registered loss itself;
    - pair-wise, several ranks: :class:`GlobalPairLoss`, each rank's anchors against the global batch;
    - class-level, one process: the registered loss with its ``(C, D)`` proxies;
    - class-level, several ranks or ``loss.sample_ratio < 1``: :class:`ShardedProxyLoss`, each rank
      owning ``C / W`` proxies (and scoring a sampled share of them when ``sample_ratio < 1``).

    In every case the value is the loss of the global batch and DDP's gradient average gives the
    single-process gradient (see :mod:`pairsim.distributed`).

    Raises:
        ValueError: for ``sample_ratio < 1`` with a pair-wise loss, or a loss with no sharded form.

    Example:
        >>> from pairsim.training.config import load_config
        >>> type(build_loss(load_config(None, ["loss.class_level=true"]), 10, 8, Parallel())).__name__
        'CircleLoss'
        >>> type(build_loss(load_config(None, ["loss.class_level=true", "loss.sample_ratio=0.5"]), 10, 8,
        ...                 Parallel())).__name__
        'ShardedProxyLoss'
    """
    cfg = config.loss
    if not cfg.class_level:
        if cfg.sample_ratio != 1.0:
            raise ValueError("loss.sample_ratio samples class proxies: it needs loss.class_level=true")
        loss = create_loss(cfg.name, **cfg.params)
        return GlobalPairLoss(loss) if parallel.distributed else loss
    if parallel.distributed or cfg.sample_ratio < 1.0:
        return create_sharded_loss(  # raises ValueError for a loss without a sharded head
            cfg.name, num_classes, embedding_dim, cfg.params, sample_ratio=cfg.sample_ratio, seed=config.seed
        )
    return create_loss(cfg.name, num_classes=num_classes, embedding_dim=embedding_dim, **cfg.params)
