"""Hyper-parameter defaults (the papers') and validation of the loss family."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pairsim import (
    ArcFaceLoss,
    ContrastiveLoss,
    CosFaceLoss,
    MultiSimilarityLoss,
    NormFaceLoss,
    NTXentLoss,
    PairLoss,
    ProxyAnchorLoss,
    SoftmaxLoss,
    TripletLoss,
    create_loss,
)

CL = {"num_classes": 3, "embedding_dim": 4}

INVALID: list[tuple[type[PairLoss], dict[str, Any], str]] = [
    (NormFaceLoss, {"gamma": 0.0, **CL}, "gamma"),
    (CosFaceLoss, {"m": -0.1, **CL}, "m must lie"),
    (CosFaceLoss, {"gamma": float("inf"), **CL}, "gamma"),
    (ArcFaceLoss, {"m": 2.0, **CL}, "m must lie"),
    (ArcFaceLoss, {"gamma": -1.0, **CL}, "gamma"),
    (ProxyAnchorLoss, {"alpha": 0.0, **CL}, "alpha"),
    (ProxyAnchorLoss, {"delta": 1.5, **CL}, "delta"),
    (TripletLoss, {"margin": -0.1}, "margin"),
    (TripletLoss, {"margin": 2.5}, "margin"),
    (TripletLoss, {"mining": "semi_hard"}, "mining"),
    (ContrastiveLoss, {"pos_margin": 1.5}, "pos_margin"),
    (ContrastiveLoss, {"neg_margin": float("nan")}, "neg_margin"),
    (MultiSimilarityLoss, {"alpha": 0.0}, "alpha"),
    (MultiSimilarityLoss, {"beta": -50.0}, "beta"),
    (MultiSimilarityLoss, {"base": 2.0}, "base"),
    (NTXentLoss, {"temperature": 0.0}, "temperature"),
]


@pytest.mark.parametrize(("cls", "kwargs", "match"), INVALID, ids=lambda v: getattr(v, "__name__", None))
def test_invalid_hyperparameters_raise(cls: type[PairLoss], kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_paper_defaults() -> None:
    cosface = CosFaceLoss(**CL)
    assert (cosface.m, cosface.gamma) == (0.35, 64.0)
    arcface = ArcFaceLoss(**CL)
    assert (arcface.m, arcface.gamma) == (0.5, 64.0)
    proxy_anchor = ProxyAnchorLoss(**CL)
    assert (proxy_anchor.alpha, proxy_anchor.delta) == (32.0, 0.1)
    ms = MultiSimilarityLoss()
    assert (ms.alpha, ms.beta, ms.base) == (2.0, 50.0, 0.5)
    assert NTXentLoss().temperature == 0.07
    assert TripletLoss().mining == "batch_hard"


def test_registry_names() -> None:
    expected = {
        "softmax": SoftmaxLoss,
        "normface": NormFaceLoss,
        "cosface": CosFaceLoss,
        "arcface": ArcFaceLoss,
        "proxy_anchor": ProxyAnchorLoss,
    }
    for name, cls in expected.items():
        assert type(create_loss(name, **CL)) is cls
    pair_wise = {
        "triplet": TripletLoss,
        "contrastive": ContrastiveLoss,
        "multi_similarity": MultiSimilarityLoss,
        "ntxent": NTXentLoss,
    }
    for name, cls in pair_wise.items():
        assert type(create_loss(name)) is cls
        assert type(create_loss(name, **CL)) is cls
    assert create_loss("arcface", m=math.pi / 2, **CL).m == math.pi / 2


def test_repr_names_hyperparameters() -> None:
    assert "mining='all'" in repr(TripletLoss(margin=0.2, mining="all"))
    assert "num_classes=3" in repr(CosFaceLoss(**CL))
