"""The trainer on a GPU: it learns, its checkpoints load on the CPU, and a run moves between devices.

Run by hand on a machine with a GPU (``pytest -m gpu tests/gpu``); skipped without CUDA.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tests.training.helpers import synthetic_images
from tests.training.test_trainer import tiny_config

from pairsim.models import embed, load_embedding_model, read_state
from pairsim.training.evaluate import evaluate_model
from pairsim.training.metrics_log import read_metrics
from pairsim.training.trainer import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_training_on_the_gpu_learns_and_its_checkpoint_embeds_alike_on_the_cpu(tmp_path: Path) -> None:
    train, held_out = synthetic_images(24, 6, seed=0), synthetic_images(8, 6, seed=10, split="test")
    overrides = [
        "steps=60",
        "eval_every=30",
        "optim.lr=1e-3",
        "device=cuda",
        "augment.degrees=10",
        "augment.translate=0.1",
    ]
    trainer = Trainer(tiny_config(tmp_path, *overrides), train, held_out, False)
    assert next(trainer.model.parameters()).device.type == "cuda"
    before = evaluate_model(trainer.model, held_out)["precision_at_1"]
    result = trainer.run()
    assert result.final_eval is not None
    assert result.final_eval["precision_at_1"] > before + 0.1
    on_gpu = embed(trainer.model, held_out.images)
    assert on_gpu.device.type == "cpu"
    model, _ = load_embedding_model(result.last_checkpoint)
    assert next(model.parameters()).device.type == "cpu"
    # cuDNN convolutions run in TF32 by default (10-bit mantissa): unit vectors agree to ~1e-3.
    torch.testing.assert_close(embed(model, held_out.images), on_gpu, rtol=0.0, atol=3e-3)


def test_class_level_training_on_the_gpu_lowers_the_loss(tmp_path: Path) -> None:
    overrides = ["steps=40", "eval_every=0", "device=cuda", "loss.class_level=true", "loss.params={m: 0.25, gamma: 64}"]
    trainer = Trainer(tiny_config(tmp_path, *overrides), synthetic_images(24, 6, seed=0), None, False)
    assert trainer.loss_fn.proxies is not None and trainer.loss_fn.proxies.device.type == "cuda"
    trainer.run()
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "train"]
    assert len(losses) == 40 and all(math.isfinite(v) for v in losses)
    assert sum(losses[-5:]) < 0.8 * sum(losses[:5])


def test_a_gpu_run_resumes_on_the_cpu_and_back(tmp_path: Path) -> None:
    train = synthetic_images(8, 4, seed=0)
    Trainer(tiny_config(tmp_path, "steps=2", "eval_every=0", "device=cuda"), train, None, False).run()
    assert read_state(tmp_path / "last.pt")["cuda_rng"] is not None
    Trainer(tiny_config(tmp_path, "steps=4", "eval_every=0", "device=cpu"), train, None, False).run(resume=True)
    result = Trainer(tiny_config(tmp_path, "steps=6", "eval_every=0", "device=cuda"), train, None, False).run(True)
    assert result.steps == 6
    assert read_state(tmp_path / "last.pt")["step"] == 6


def test_bf16_training_on_the_gpu_learns(tmp_path: Path) -> None:
    train, held_out = synthetic_images(24, 6, seed=0), synthetic_images(8, 6, seed=10, split="test")
    overrides = ["steps=60", "eval_every=0", "optim.lr=1e-3", "device=cuda", "precision=bf16"]
    trainer = Trainer(tiny_config(tmp_path, *overrides), train, held_out, False)
    before = evaluate_model(trainer.model, held_out)["precision_at_1"]
    result = trainer.run()
    assert result.final_eval is not None
    assert result.final_eval["precision_at_1"] > before + 0.1


def test_deterministic_gpu_runs_repeat_and_resume_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        assert_interrupted_run_resumes_exactly(tmp_path, monkeypatch, "cuda")
    finally:
        torch.use_deterministic_algorithms(False)


def assert_interrupted_run_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    """Two runs, and one stopped between checkpoints then resumed, in one process: the same loss curve."""
    train = synthetic_images(12, 6, seed=0)
    common = ["steps=12", "checkpoint_every=5", "eval_every=0", f"device={device}", "deterministic=true"]
    common += ["augment.degrees=10", "augment.translate=0.1"]

    def losses(out: Path) -> list[float]:
        return [r["loss"] for r in read_metrics(out / "metrics.jsonl", "train")]

    Trainer(tiny_config(tmp_path / "a", *common), train, None, False).run()
    Trainer(tiny_config(tmp_path / "b", *common), train, None, False).run()
    interrupted = Trainer(tiny_config(tmp_path / "c", *common), train, None, False)
    take_step = interrupted.train_step

    def step_until_7(step: int) -> dict[str, float]:
        if step == 7:  # dies between checkpoints: steps 6 and 7 are lost and redone
            raise KeyboardInterrupt
        return take_step(step)

    monkeypatch.setattr(interrupted, "train_step", step_until_7)
    with pytest.raises(KeyboardInterrupt):
        interrupted.run()
    assert read_state(tmp_path / "c" / "last.pt")["step"] == 5
    Trainer(tiny_config(tmp_path / "c", *common), train, None, False).run(resume=True)
    assert len(losses(tmp_path / "a")) == 12
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    assert losses(tmp_path / "c") == losses(tmp_path / "a")
