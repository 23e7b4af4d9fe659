"""The trainer end to end on tiny synthetic data: learning, both paradigms, every registered loss."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from tests.training.helpers import synthetic_images

from pairsim.losses import get_loss_class, list_losses
from pairsim.models import embed, load_embedding_model, read_state
from pairsim.training.config import TrainConfig, load_config
from pairsim.training.evaluate import evaluate_model
from pairsim.training.metrics_log import read_metrics
from pairsim.training.trainer import Trainer, lr_factor

TINY = [
    "model.name=small-cnn",
    "model.pretrained=false",
    "model.embedding_dim=16",
    "sampler.classes_per_batch=4",
    "sampler.samples_per_class=4",
    "optim.warmup_steps=2",
    "threads=1",
]


def tiny_config(out_dir: Path, *overrides: str) -> TrainConfig:
    return load_config(None, [*TINY, f"out_dir={out_dir}", *overrides])


def test_training_beats_the_untrained_model_on_held_out_classes(tmp_path: Path) -> None:
    train, held_out = synthetic_images(24, 6, seed=0), synthetic_images(8, 6, seed=10, split="test")
    trainer = Trainer(tiny_config(tmp_path, "steps=60", "eval_every=30", "optim.lr=1e-3"), train, held_out, False)
    before = evaluate_model(trainer.model, held_out)["precision_at_1"]
    result = trainer.run()
    assert result.steps == 60
    assert result.final_eval is not None
    assert result.final_eval["precision_at_1"] > before + 0.1
    records = read_metrics(tmp_path / "metrics.jsonl")
    train_records = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train_records] == list(range(1, 61))
    assert [r["step"] for r in records if r["kind"] == "eval"] == [30, 60]
    for key in ("loss", "lr", "images_per_s", "sp_mean", "sp_q10", "sp_q50", "sp_q90", "sn_mean", "outside_circle"):
        assert key in train_records[-1]
    first, last = train_records[:5], train_records[-5:]
    assert sum(r["sp_mean"] - r["sn_mean"] for r in last) > sum(r["sp_mean"] - r["sn_mean"] for r in first)
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "last.pt").exists()
    assert result.best_checkpoint is not None
    assert read_state(result.best_checkpoint)["best"] == result.best_precision_at_1


def test_embedding_model_reloads_from_a_checkpoint(tmp_path: Path) -> None:
    train = synthetic_images(8, 4, seed=0)
    result = Trainer(tiny_config(tmp_path, "steps=3", "eval_every=0"), train, None, False).run()
    model, prep = load_embedding_model(result.last_checkpoint)
    assert prep.in_channels == 1 and prep.image_size == 16
    assert not model.training
    trainer = Trainer(tiny_config(tmp_path / "again", "steps=3", "eval_every=0"), train, None, False)
    trainer.run()
    torch.testing.assert_close(embed(model, train.images), embed(trainer.model, train.images))


def paradigms() -> list[tuple[str, bool]]:
    cases = []
    for name in list_losses():
        cls = get_loss_class(name)
        cases += [(name, False)] if cls.supports_pair_wise else []
        cases += [(name, True)] if cls.supports_class_level else []
    return cases


@pytest.mark.parametrize(("name", "class_level"), paradigms())
def test_every_registered_loss_trains_in_each_paradigm(tmp_path: Path, name: str, class_level: bool) -> None:
    train = synthetic_images(8, 4, seed=0)
    overrides = ["steps=2", "eval_every=0", f"loss.name={name}", f"loss.class_level={class_level}", "loss.params={}"]
    trainer = Trainer(tiny_config(tmp_path, *overrides), train, None, False)
    proxies_before = [p.detach().clone() for p in trainer.loss_fn.parameters()]
    assert bool(proxies_before) == class_level
    trainer.run()
    records = read_metrics(tmp_path / "metrics.jsonl", "train")
    assert len(records) == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    if class_level:
        assert trainer.optimizer.param_groups[-1]["peak_lr"] == trainer.config.optim.proxy_lr
        assert any(not torch.equal(a, b) for a, b in zip(proxies_before, trainer.loss_fn.parameters(), strict=True))


@pytest.mark.parametrize("name", ["circle", "cosface", "arcface", "softmax"])
def test_partial_fc_sampling_trains_with_sharded_proxies_in_one_process(tmp_path: Path, name: str) -> None:
    train = synthetic_images(12, 4, seed=0)
    overrides = ["steps=3", "eval_every=0", f"loss.name={name}", "loss.class_level=true", "loss.params={}"]
    trainer = Trainer(tiny_config(tmp_path, *overrides, "loss.sample_ratio=0.5"), train, None, False)
    assert type(trainer.loss_fn).__name__ == "ShardedProxyLoss" and trainer.pair_loss is None
    before = trainer.loss_fn.proxies.detach().clone()
    trainer.run()
    after = trainer.loss_fn.proxies.detach()
    changed = (before != after).any(dim=1)
    assert 0 < int(changed.sum()) <= 12  # batches' classes and sampled negatives move
    record = read_metrics(tmp_path / "metrics.jsonl", "train")[-1]
    assert torch.isfinite(torch.tensor(record["loss"])) and "sp_mean" not in record


def test_sample_ratio_needs_class_proxies(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs loss\.class_level"):
        Trainer(tiny_config(tmp_path, "loss.sample_ratio=0.5"), synthetic_images(8, 4), None, False)


def test_resume_refuses_a_different_configuration(tmp_path: Path) -> None:
    train = synthetic_images(8, 4, seed=0)
    Trainer(tiny_config(tmp_path, "steps=2", "eval_every=0"), train, None, False).run()
    other = Trainer(tiny_config(tmp_path, "steps=4", "eval_every=0", "optim.lr=0.5"), train, None, False)
    with pytest.raises(ValueError, match=r"another configuration: optim\.lr \(0\.001 -> 0\.5\); resume"):
        other.run(resume=True)


def test_resume_may_change_the_device_setting(tmp_path: Path) -> None:
    train = synthetic_images(8, 4, seed=0)
    Trainer(tiny_config(tmp_path, "steps=2", "eval_every=0", "device=cpu"), train, None, False).run()
    result = Trainer(tiny_config(tmp_path, "steps=3", "eval_every=0", "device=auto"), train, None, False).run(True)
    assert result.steps == 3


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "CPU", ""])
def test_a_bad_device_setting_is_named(tmp_path: Path, device: str) -> None:
    with pytest.raises(ValueError, match="device"):
        tiny_config(tmp_path, f"device={device}")  # "" reads as null: a type error naming config.device


def test_bf16_precision_trains_with_float32_losses(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tmp_path, "steps=3", "eval_every=0", "precision=bf16"), synthetic_images(8, 4), None)
    result = trainer.run()
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl", "train")]
    assert result.steps == 3 and len(losses) == 3 and all(math.isfinite(v) and v > 0 for v in losses)
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_a_bad_precision_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision must be 'auto', 'fp32' or 'bf16', got 'fp16'"):
        tiny_config(tmp_path, "precision=fp16")


def test_resume_may_extend_the_number_of_steps(tmp_path: Path) -> None:
    train = synthetic_images(8, 4, seed=0)
    Trainer(tiny_config(tmp_path, "steps=2", "eval_every=0"), train, None, False).run()
    result = Trainer(tiny_config(tmp_path, "steps=4", "eval_every=0"), train, None, False).run(resume=True)
    assert result.steps == 4
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl", "train")] == [1, 2, 3, 4]


def test_lr_schedule_warms_up_then_decays_to_the_final_ratio() -> None:
    values = [lr_factor(s, 100, 10, 0.1) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(values[10:]))
    assert values[-1] == pytest.approx(0.1, abs=1e-3)
