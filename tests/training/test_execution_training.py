"""Training under each execution setting learns; auto follows the CPU; a resumed run says when it changed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from tests.training.helpers import synthetic_images
from tests.training.test_trainer import tiny_config

from pairsim.models import EXACT, CpuFeatures, Execution
from pairsim.models import execution as execution_module
from pairsim.training.evaluate import evaluate_model
from pairsim.training.metrics_log import read_metrics
from pairsim.training.trainer import Trainer

SETTINGS = {
    "exact": ["precision=fp32", "channels_last=false", "compile=false"],
    "channels-last": ["precision=fp32", "channels_last=true", "compile=false"],
    "bf16": ["precision=bf16", "channels_last=true", "compile=false"],
    "compiled": ["precision=fp32", "channels_last=true", "compile=true"],
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_each_setting_learns(tmp_path: Path, setting: str) -> None:
    train, held_out = synthetic_images(24, 6, seed=0), synthetic_images(8, 6, seed=10, split="test")
    config = tiny_config(tmp_path, "steps=60", "eval_every=60", "optim.lr=1e-3", *SETTINGS[setting])
    trainer = Trainer(config, train, held_out, False)
    assert trainer.execution.compile == (setting == "compiled")
    before = evaluate_model(trainer.model, held_out)["precision_at_1"]
    result = trainer.run()
    assert result.final_eval is not None
    assert result.final_eval["precision_at_1"] > before + 0.1
    losses = [r["loss"] for r in read_metrics(tmp_path / "metrics.jsonl", "train")]
    assert sum(losses[-10:]) < sum(losses[:10])
    if setting != "exact":
        assert next(trainer.model.backbone.parameters()).is_contiguous(memory_format=torch.channels_last)
    compiled = read_metrics(tmp_path / "metrics.jsonl", "compile")
    if setting == "compiled":
        first, summary = compiled
        assert first["step"] == 1 and first["first_step_seconds"] > 0 and first["graphs"] >= 1
        assert summary["step"] == 60 and summary["recompilations"] == 0
    else:
        assert compiled == []


def test_exact_settings_keep_the_model_as_it_was(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(tmp_path, "steps=1", *SETTINGS["exact"]), synthetic_images(8, 4), None, False)
    assert trainer.execution == EXACT and trainer.eval_execution == EXACT
    assert trainer.forward_model is trainer.model
    conv = next(p for p in trainer.model.parameters() if p.dim() == 4 and p.shape[1] > 1)
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(
    ("cpu", "train", "inference"),
    [
        (CpuFeatures(avx512_bf16=False, amx=False), "fp32", "fp32"),
        (CpuFeatures(avx512_bf16=True, amx=False), "fp32", "bf16"),
        (CpuFeatures(avx512_bf16=True, amx=True), "bf16", "bf16"),
    ],
)
def test_auto_follows_the_probed_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cpu: CpuFeatures, train: str, inference: str
) -> None:
    monkeypatch.setattr(execution_module, "probe_cpu", lambda: cpu)
    trainer = Trainer(tiny_config(tmp_path, "steps=1", "device=cpu"), synthetic_images(8, 4), None, False)
    assert trainer.execution == Execution(train, channels_last=True, compile=False)
    assert trainer.eval_execution == Execution(inference, channels_last=True, compile=False)


def test_resuming_under_other_settings_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = synthetic_images(8, 4)
    Trainer(tiny_config(tmp_path, "steps=2", "eval_every=0", *SETTINGS["exact"]), data, None, False).run()
    with caplog.at_level(logging.WARNING):
        same = Trainer(tiny_config(tmp_path, "steps=3", "eval_every=0", *SETTINGS["exact"]), data, None, False)
        same.run(resume=True)
    assert "bit-exact" not in caplog.text
    with caplog.at_level(logging.WARNING):
        other = Trainer(tiny_config(tmp_path, "steps=4", "eval_every=0", *SETTINGS["bf16"]), data, None, False)
        result = other.run(resume=True)
    assert result.steps == 4
    assert "resuming under bf16, channels-last, eager; the checkpoint was written under fp32, channels-first" in (
        caplog.text
    )
