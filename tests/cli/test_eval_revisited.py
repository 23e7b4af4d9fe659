"""``pairsim eval ... --revisited GND``: Revisited Oxford / Paris scores from saved embeddings."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from pairsim.cli.main import main
from pairsim.evaluation import RevisitedGroundTruth, revisited_map_from_embeddings


def _data(tmp_path: Path) -> tuple[np.ndarray, np.ndarray, RevisitedGroundTruth, Path]:
    rng = np.random.default_rng(0)
    queries, gallery = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    lists: dict[str, list[list[int]]] = {"easy": [], "hard": [], "junk": []}
    for q in range(5):
        perm = rng.permutation(40).tolist()
        lists["easy"].append(perm[:4])
        lists["hard"].append(perm[4:7] if q else [])  # query 0 has no hard item: left out of Hard
        lists["junk"].append(perm[7:10])
    gt = RevisitedGroundTruth(**lists)
    gt.save_json(tmp_path / "gnd.json")
    return queries, gallery, gt, tmp_path / "gnd.json"


def test_one_file_and_two_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queries, gallery, gt, gnd = _data(tmp_path)
    np.savez(tmp_path / "emb.npz", query_embeddings=queries, embeddings=gallery)
    out = tmp_path / "out" / "rox"
    assert main(["eval", str(tmp_path / "emb.npz"), "--revisited", str(gnd), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    expected = revisited_map_from_embeddings(queries, gallery, gt).as_dict()
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["protocol"] == "revisited" and "--revisited" in report["command"]
    assert report["metrics"] == pytest.approx(expected, abs=1e-12)
    assert report["metrics"]["hard_num_queries"] == 4
    for row in ("Easy", "Medium", "Hard"):
        assert row in printed
    assert "mP@10" in printed and f"{expected['medium_map']:.4f}" in printed
    table = Path(f"{out}.md").read_text()
    assert "| protocol | mAP | mP@1 | mP@5 | mP@10 | queries |" in table
    assert f"| Hard | {expected['hard_map']:.4f} |" in table

    np.savez(tmp_path / "q.npz", embeddings=queries)
    np.savez(tmp_path / "g.npz", embeddings=gallery)
    args = ["eval", str(tmp_path / "q.npz"), "--gallery", str(tmp_path / "g.npz"), "--revisited", str(gnd)]
    assert main([*args, "--ks", "1", "3", "--out", str(out)]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    assert report["metrics"] == pytest.approx(
        revisited_map_from_embeddings(queries, gallery, gt, (1, 3)).as_dict(), abs=1e-12
    )
    assert "easy_mp_at_3" in report["metrics"] and "easy_mp_at_5" not in report["metrics"]


def test_the_pickle_needs_trust_pickle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queries, gallery, gt, _ = _data(tmp_path)
    np.savez(tmp_path / "emb.npz", query_embeddings=queries, embeddings=gallery)
    official = {"gnd": [{k: np.asarray(getattr(gt, k)[q]) for k in ("easy", "hard", "junk")} for q in range(5)]}
    (tmp_path / "gnd.pkl").write_bytes(pickle.dumps(official))
    args = ["eval", str(tmp_path / "emb.npz"), "--revisited", str(tmp_path / "gnd.pkl"), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "--trust-pickle" in capsys.readouterr().err
    assert main([*args, "--trust-pickle"]) == 0
    report = json.loads((tmp_path / "o.json").read_text())
    assert report["metrics"]["medium_map"] == pytest.approx(
        revisited_map_from_embeddings(queries, gallery, gt).medium.map, abs=1e-12
    )


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queries, gallery, _, gnd = _data(tmp_path)
    np.savez(tmp_path / "gallery_only.npz", embeddings=gallery)
    out = ["--out", str(tmp_path / "o")]
    assert main(["eval", str(tmp_path / "gallery_only.npz"), "--revisited", str(gnd), *out]) == 2
    assert "no array 'query_embeddings'" in capsys.readouterr().err
    np.savez(tmp_path / "few.npz", query_embeddings=queries, embeddings=gallery[:20])
    assert main(["eval", str(tmp_path / "few.npz"), "--revisited", str(gnd), *out]) == 2
    assert "but the gallery has 20 items" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "m.pt"), "folder", "--revisited", str(gnd), *out]) == 2
    assert "saved embeddings" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "few.npz"), "--revisited", str(gnd), "--protocol", "reid", *out]) == 2
    assert "drop --protocol reid" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "few.npz"), "--gallery", str(tmp_path / "g.npz"), *out]) == 2
    assert "only go with --revisited" in capsys.readouterr().err
