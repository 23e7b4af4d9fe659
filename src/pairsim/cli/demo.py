"""``pairsim demo``: a small end-to-end demonstration of Circle loss in both paradigms.

It learns a linear embedding of synthetic clustered data with pair-wise and class-level
Circle loss and reports precision@1 on held-out classes before and after.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from pairsim.losses import create_loss


def register(subparsers: Any) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser("demo", help="run the end-to-end demonstration")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def make_clusters(num_classes: int, per_class: int, dim: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Noisy samples around random class centres; a random linear map hides the structure."""
    centres = torch.randn(num_classes, dim, generator=generator)
    labels = torch.arange(num_classes).repeat_interleave(per_class)
    x = centres[labels] + 1.5 * torch.randn(len(labels), dim, generator=generator)
    return x, labels


def precision_at_1(embeddings: Tensor, labels: Tensor) -> float:
    """Leave-one-out precision@1 under cosine similarity."""
    z = F.normalize(embeddings, dim=1)
    sim = z @ z.T
    sim.fill_diagonal_(float("-inf"))
    return float((labels[sim.argmax(dim=1)] == labels).float().mean())


def run(args: argparse.Namespace) -> int:
    """Train and report; returns 0."""
    generator = torch.Generator().manual_seed(args.seed)
    torch.manual_seed(args.seed)
    dim, emb_dim, classes = 64, 32, 100
    x, y = make_clusters(classes, 10, dim, generator)
    train = y < classes // 2
    x_test, y_test = x[~train], y[~train]
    for name, kwargs in (
        ("pair-wise", {"m": 0.4, "gamma": 80.0}),
        ("class-level", {"m": 0.25, "gamma": 64.0, "num_classes": classes // 2, "embedding_dim": emb_dim}),
    ):
        model = torch.nn.Linear(dim, emb_dim)
        loss_fn = create_loss("circle", **kwargs)
        before = precision_at_1(model(x_test).detach(), y_test)
        optimizer = torch.optim.Adam([*model.parameters(), *loss_fn.parameters()], lr=1e-2)
        for _ in range(args.steps):
            idx = torch.randperm(int(train.sum()), generator=generator)[:128]
            loss = loss_fn(model(x[train][idx]), y[train][idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        after = precision_at_1(model(x_test).detach(), y_test)
        print(
            f"circle loss, {name:11s}: held-out precision@1 {before:.3f} -> {after:.3f} (last loss {loss.item():.3f})"
        )
    return 0
