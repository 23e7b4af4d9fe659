"""``pairsim eval``: embeddings files for each protocol, a checkpoint on a data set, and errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pairsim.cli.main import main
from pairsim.evaluation import reid_metrics, retrieval_metrics, verification_scores


def _embeddings(seed: int = 0, n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 15, n)
    return (rng.normal(size=(15, 8))[labels] + rng.normal(size=(n, 8))).astype(np.float32), labels


def _run(tmp_path: Path, npz: dict[str, np.ndarray], *extra: str) -> tuple[int, dict, str]:
    source = tmp_path / "emb.npz"
    np.savez(source, **npz)  # type: ignore[arg-type]
    out = tmp_path / "out" / "result"
    code = main(["eval", str(source), "--out", str(out), *extra])
    if code != 0:
        return code, {}, ""
    return code, json.loads(Path(f"{out}.json").read_text()), Path(f"{out}.md").read_text()


def test_retrieval_leave_one_out_and_query_gallery(tmp_path: Path) -> None:
    x, y = _embeddings()
    code, report, table = _run(tmp_path, {"embeddings": x, "labels": y}, "--clustering")
    assert code == 0
    expected = retrieval_metrics(x, y)
    for name, value in expected.items():
        assert report["metrics"][name] == pytest.approx(value, abs=1e-12)
    assert 0.0 <= report["metrics"]["nmi"] <= 1.0
    assert f"| map_at_r | {expected['map_at_r']:.4f} |" in table
    assert report["protocol"] == "retrieval" and report["command"].startswith("pairsim eval ")
    assert "--clustering" in report["command"]

    npz = {"embeddings": x[40:], "labels": y[40:], "query_embeddings": x[:40], "query_labels": y[:40]}
    code, report, _ = _run(tmp_path, npz, "--ks", "1", "5")
    assert code == 0
    assert report["metrics"]["recall_at_5"] == pytest.approx(
        retrieval_metrics(x[40:], y[40:], x[:40], y[:40], ks=(1, 5))["recall_at_5"], abs=1e-12
    )


def test_reid(tmp_path: Path) -> None:
    x, y = _embeddings(1)
    cams = np.arange(len(y)) % 3
    npz = {
        "embeddings": x[30:],
        "labels": y[30:],
        "camera_ids": cams[30:],
        "query_embeddings": x[:30],
        "query_labels": y[:30],
        "query_camera_ids": cams[:30],
    }
    code, report, _ = _run(tmp_path, npz, "--protocol", "reid", "--max-rank", "10")
    assert code == 0
    expected = reid_metrics(x[:30], y[:30], cams[:30], x[30:], y[30:], cams[30:], max_rank=10)
    assert report["metrics"]["rank_1"] == pytest.approx(expected.rank_1, abs=1e-12)
    assert report["metrics"]["map"] == pytest.approx(expected.map, abs=1e-12)
    assert report["metrics"]["minp"] == pytest.approx(expected.minp, abs=1e-12)


def test_verification_listed_and_all_pairs(tmp_path: Path) -> None:
    x, y = _embeddings(2, n=60)
    rng = np.random.default_rng(0)
    pairs = rng.integers(0, 60, (200, 2))
    is_same = y[pairs[:, 0]] == y[pairs[:, 1]]
    code, report, table = _run(
        tmp_path, {"embeddings": x, "labels": y, "pairs": pairs, "is_same": is_same}, "--protocol", "verification"
    )
    assert code == 0
    xn = torch.nn.functional.normalize(torch.from_numpy(x), dim=1)
    scores = (xn[pairs[:, 0]] * xn[pairs[:, 1]]).sum(dim=1)
    assert report["metrics"]["auc"] == pytest.approx(verification_scores(scores, is_same).auc, abs=1e-6)
    assert report["metrics"]["tar_at_far_1e-06"] is None  # 200 pairs cannot resolve FAR 1e-6
    assert "| tar_at_far_1e-06 | n/a |" in table
    code, report, _ = _run(tmp_path, {"embeddings": x, "labels": y}, "--protocol", "verification")
    assert code == 0
    assert report["metrics"]["num_genuine"] + report["metrics"]["num_impostor"] == 60 * 59 / 2


def test_errors_exit_with_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _embeddings(3)
    code, _, _ = _run(tmp_path, {"embeddings": x, "labels": y}, "--protocol", "reid")
    assert code == 2
    assert "camera_ids" in capsys.readouterr().err
    code, _, _ = _run(tmp_path, {"embeddings": x}, "--protocol", "retrieval")
    assert code == 2
    assert "no array 'labels'" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "missing.pt"), "hangul-fonts", "--out", str(tmp_path / "o")]) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "model.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "DATA" in capsys.readouterr().err


def test_checkpoint_on_a_folder_data_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from pairsim.models import create_model, model_spec, save_state

    monkeypatch.setenv("PAIRSIM_DATA", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for c in range(4):
        (tmp_path / "images" / f"class{c}").mkdir(parents=True)
        for i in range(3):
            pixels = (rng.random((16, 16, 3)) * 60 + 60 * c).astype(np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / f"class{c}" / f"{i}.png")
    model = create_model("small-cnn", embedding_dim=8, in_channels=3)
    model.preprocessing = type(model.preprocessing)(**{**model.preprocessing.__dict__, "image_size": 16})
    save_state({"model": model.state_dict(), "model_spec": model_spec("small-cnn", model)}, tmp_path / "m.pt")
    out = tmp_path / "ckpt_eval"
    args = ["eval", str(tmp_path / "m.pt"), "folder", "--root", str(tmp_path / "images"), "--split", "all"]
    assert main([*args, "--ks", "1", "--out", str(out)]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["metrics"]["num_queries"] == 12
    assert 0.0 <= report["metrics"]["precision_at_1"] <= 1.0
