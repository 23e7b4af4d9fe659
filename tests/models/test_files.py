"""Model files: saved with what rebuilds them, loaded without the trainer, clear errors for other files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from pairsim.models import create_model, embed, load_model, model_fingerprint, model_spec, save_model_file, save_state


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = create_model("small-cnn", embedding_dim=6, in_channels=1)
    model.preprocessing = dataclasses.replace(model.preprocessing, image_size=16)
    return model


def test_a_model_file_rebuilds_the_same_model(tmp_path: Path) -> None:
    model = small_model()
    state = {"model_spec": model_spec("small-cnn", model), "model": model.state_dict(), "optimizer": {"x": 1}}
    save_model_file(state, tmp_path / "model.pt")
    assert set(torch.load(tmp_path / "model.pt", weights_only=True)) == {"model_spec", "model"}  # no optimiser
    loaded = load_model(tmp_path / "model.pt")
    assert not loaded.model.training and loaded.preprocessing == model.preprocessing
    assert loaded.fingerprint == model_fingerprint(state["model_spec"], state["model"])
    pixels = np.random.default_rng(0).integers(0, 255, (5, 1, 16, 16), dtype=np.uint8)
    torch.testing.assert_close(embed(loaded.model, pixels), embed(model, pixels), rtol=0, atol=0)


def test_the_fingerprint_changes_with_any_weight() -> None:
    model = small_model()
    spec, weights = model_spec("small-cnn", model), model.state_dict()
    before = model_fingerprint(spec, weights)
    weights["head.linear.bias"] = weights["head.linear.bias"].clone()
    weights["head.linear.bias"][0] += 1e-6
    assert model_fingerprint(spec, weights) != before


def test_files_that_are_not_model_files(tmp_path: Path) -> None:
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"text\.pt is not a pairsim checkpoint or model file \(not a torch\.save"):
        load_model(tmp_path / "text.pt")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="it holds a list"):
        load_model(tmp_path / "list.pt")
    other = small_model()
    spec = {**model_spec("small-cnn", other), "embedding_dim": 9}  # weights of a 6-dimensional head
    save_state({"model_spec": spec, "model": other.state_dict()}, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="the weights do not fit model 'small-cnn'"):
        load_model(tmp_path / "mismatch.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_model(tmp_path / "absent.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "mismatch.pt").read_bytes()[:300])  # a torch.save cut short
    with pytest.raises(ValueError, match=r"cut\.pt is not a pairsim checkpoint or model file \(torch\.load"):
        load_model(tmp_path / "cut.pt")


def test_specs_that_describe_no_model(tmp_path: Path) -> None:
    model = small_model()
    spec, weights = model_spec("small-cnn", model), model.state_dict()
    bad_specs = {
        "unknown.pt": ({**spec, "name": "no-such-net"}, "unknown model 'no-such-net'"),
        "no_prep.pt": ({k: v for k, v in spec.items() if k != "preprocessing"}, "preprocessing"),
        "odd_prep.pt": ({**spec, "preprocessing": {**spec["preprocessing"], "gamma": 2}}, "gamma"),
        "text_spec.pt": ("small-cnn", "describes no pairsim model"),
    }
    for name, (bad, fragment) in bad_specs.items():
        save_state({"model_spec": bad, "model": weights}, tmp_path / name)
        with pytest.raises(ValueError, match=f"{name}: its model_spec describes no pairsim model") as error:
            load_model(tmp_path / name)
        assert fragment in str(error.value)
    save_state({"model_spec": spec, "model": [1, 2]}, tmp_path / "list_weights.pt")
    with pytest.raises(ValueError, match=r"list_weights\.pt: its model is a list, not a state dict"):
        load_model(tmp_path / "list_weights.pt")


def test_embed_batches_and_features() -> None:
    model = small_model()
    pixels = np.random.default_rng(1).integers(0, 255, (7, 1, 16, 16), dtype=np.uint8)
    torch.testing.assert_close(embed(model, pixels, batch_size=2), embed(model, pixels, batch_size=7))
    features = embed(model, pixels, features=True)
    assert features.shape == (7, model.num_features)
    torch.testing.assert_close(features.norm(dim=1), torch.ones(7))
    assert embed(model, pixels[:0]).shape == (0, 6)
    with pytest.raises(ValueError, match="batch_size"):
        embed(model, pixels, batch_size=0)
