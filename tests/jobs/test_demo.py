"""The main job's pipeline on a tiny folder data set: metrics.json and a self-contained report.html."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tests.cli.test_train import write_folder

from pairsim.index import IndexStore
from pairsim.jobs.demo import run_demo
from pairsim.training.config import load_config


def test_demo_writes_metrics_and_a_self_contained_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAIRSIM_DATA", str(tmp_path / "cache"))
    folder = write_folder(tmp_path / "images", num_classes=16, per_class=5)
    config = load_config(
        None,
        [
            "data.name=folder",
            f"data.root={folder}",
            "data.image_size=16",
            "data.eval_max_classes=4",
            "model.name=small-cnn",
            "model.pretrained=false",
            "model.embedding_dim=8",
            "sampler.classes_per_batch=3",
            "sampler.samples_per_class=2",
            "steps=4",
            "eval_every=2",
            "threads=1",
            f"out_dir={tmp_path / 'demo'}",
        ],
    )
    lines: list[str] = []
    result = run_demo(config, eval_classes=6, progress=False, say=lines.append)
    metrics = json.loads(result.metrics_path.read_text())
    for model in ("trained", "baseline_pretrained"):
        assert set(metrics[model]) == {"precision_at_1", "r_precision", "map_at_r"}
        assert all(0.0 <= v <= 1.0 for v in metrics[model].values())
    assert metrics["held_out_classes"] <= 6 and metrics["steps"] == 4
    assert {"data", "train", "baseline_eval", "final_eval", "report", "total"} <= set(metrics["seconds"])
    assert any("trained model" in line for line in lines)

    page = result.report_path.read_text()
    seconds = metrics["seconds"]  # the page was written once the timings were final: it shows the same ones
    assert f"report {seconds['report']:.0f} s, total {seconds['total']:.0f} s" in page
    assert seconds["total"] >= sum(v for k, v in seconds.items() if k != "total") - 1e-6
    assert len(re.findall(r"src='data:image/png;base64,", page)) == 4
    assert "http" not in page  # nothing to fetch: the page works offline
    assert "Eq. 8" in page and f"{metrics['trained']['precision_at_1']:.3f}" in page
    assert (tmp_path / "demo" / "train" / "last.pt").exists()

    # The demo ends with a searchable index of the held-out images.
    store = IndexStore(tmp_path / "demo" / "index")
    assert len(store) == metrics["held_out_images"]
    assert any("pairsim serve" in line for line in lines)


def test_the_report_names_the_configured_loss_and_shows_the_final_timings(tmp_path: Path) -> None:
    from pairsim.jobs.demo_report import write_demo_report
    from pairsim.report import Figure
    from pairsim.training.config import load_config, to_dict

    config = to_dict(load_config(None, ["loss.name=triplet", "loss.class_level=false"]))
    scores = {"precision_at_1": 0.5, "r_precision": 0.4, "map_at_r": 0.3}
    metrics = {
        "trained": scores,
        "baseline_pretrained": {k: v / 2 for k, v in scores.items()},
        "data_set": "toy",
        "train_classes": 3,
        "train_images": 9,
        "held_out_classes": 2,
        "held_out_images": 6,
        "image_size": 16,
        "steps": 4,
        "seconds": {"train": 12.0, "report": 3.0, "total": 17.4},
        "threads": 2,
        "config": config,
    }
    page = write_demo_report(tmp_path / "r.html", metrics, [Figure("f", b"\x89PNG", "c")]).read_text()
    assert "pairsim demo: triplet loss on unseen classes" in page
    assert "trained (triplet loss, pair-wise)" in page and "circle loss" not in page.lower()
    assert "report 3 s, total 17 s" in page  # the timings given, report and total included
