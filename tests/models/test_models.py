"""Every registered model: shapes, unit norm, gradients; the ImageNet weights of Lite0 really load."""

from __future__ import annotations

import pytest
import torch

from pairsim.models import EmbeddingModel, Preprocessing, create_model, list_models, register_model
from pairsim.models.efficientnet import lite0_weights_path

# Lite0 needs at least 32 px (five stride-2 stages); small sizes keep the suite fast.
SIDE = 32


@pytest.mark.parametrize("name", list_models())
@pytest.mark.parametrize("channels", [1, 3])
def test_forward_backward(name: str, channels: int) -> None:
    torch.manual_seed(0)
    model = create_model(name, embedding_dim=12, in_channels=channels)
    x = torch.rand(4, channels, SIDE, SIDE)
    z = model(x)
    assert z.shape == (4, 12)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))
    z[:, 0].sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads if g is not None)
    assert model.features(x).shape == (4, model.num_features)


@pytest.mark.parametrize("name", list_models())
def test_wrong_channel_count_is_rejected(name: str) -> None:
    model = create_model(name, embedding_dim=8, in_channels=1)
    with pytest.raises(ValueError, match="1-channel"):
        model(torch.rand(2, 3, SIDE, SIDE))


def test_lite0_loads_every_imagenet_tensor() -> None:
    model = create_model("efficientnet-lite0", embedding_dim=8, in_channels=1, pretrained=True)
    saved = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    backbone = model.backbone.state_dict()
    expected = {f"net.{k}": v for k, v in saved.items() if not k.startswith("_fc.")}
    assert set(backbone) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(backbone[key], value, rtol=0, atol=0, msg=key)
    # Trained batch-norm statistics, not the defaults (mean 0, variance 1) of a fresh network.
    assert not torch.allclose(backbone["net._bn0.running_var"], torch.ones_like(backbone["net._bn0.running_var"]))


def test_lite0_pretrained_differs_from_random() -> None:
    torch.manual_seed(0)
    random = create_model("efficientnet-lite0", embedding_dim=8, in_channels=3, pretrained=False)
    pretrained = create_model("efficientnet-lite0", embedding_dim=8, in_channels=3, pretrained=True)
    w_random = random.backbone.state_dict()["net._conv_stem.weight"]
    w_pretrained = pretrained.backbone.state_dict()["net._conv_stem.weight"]
    assert not torch.equal(w_random, w_pretrained)


def test_lite0_input_scaling_and_grayscale_replication() -> None:
    model = create_model("efficientnet-lite0", embedding_dim=8, in_channels=1)
    x = torch.full((1, 1, 4, 4), 127.0 / 255.0)
    scaled = model.scale_input(x)
    assert scaled.shape == (1, 3, 4, 4)
    torch.testing.assert_close(scaled, torch.zeros(1, 3, 4, 4), atol=1e-6, rtol=0)
    torch.testing.assert_close(model.scale_input(torch.ones(1, 1, 1, 1)).flatten(), torch.full((3,), 1.0))


def test_small_cnn_has_no_pretrained_weights() -> None:
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("small-cnn", pretrained=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"name": "resnet-9000"}, "unknown model"), ({"name": "small-cnn", "in_channels": 2}, "in_channels")],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model(**kwargs)


def test_registry_refuses_a_taken_name() -> None:
    def factory(embedding_dim: int, in_channels: int, pretrained: bool) -> EmbeddingModel:
        raise AssertionError("never built")

    with pytest.raises(ValueError, match="already registered"):
        register_model("small-cnn")(factory)


def test_preprocessing_is_frozen() -> None:
    prep = Preprocessing(in_channels=1, backbone_channels=3)
    with pytest.raises(AttributeError):
        prep.offset = 0.0  # type: ignore[misc]
