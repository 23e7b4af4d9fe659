"""Revisited Oxford / Paris: hand-made known answers, a loop written from the definition, the file loaders."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pairsim.evaluation import (
    RevisitedGroundTruth,
    load_revisited_ground_truth,
    revisited_map,
    revisited_map_from_embeddings,
)

PROTOCOL_LISTS = {  # the paper's protocols: (positive lists, junk lists)
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


def _hand_made() -> tuple[RevisitedGroundTruth, np.ndarray]:
    gt = RevisitedGroundTruth(easy=[[0, 3], [2]], hard=[[5], []], junk=[[1], [0, 1, 3, 4, 5, 6]])
    ranks = np.array([[1, 0, 2, 5, 3, 4, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0]])
    return gt, ranks


def test_hand_made_known_answers() -> None:
    # AP of positives at 0-based ranks r_i (junk removed): (1/n) sum_i (P0_i + P1_i) / 2,
    # P0_i = i / r_i (1 when r_i = 0), P1_i = (i + 1) / (r_i + 1).
    # Query 0, ranking 1 0 2 5 3 4 6 7:
    #   Easy:   positives {0, 3}, junk {1, 5}: 0 2 3 4 6 7 -> ranks 0, 2:
    #           AP = ((1 + 1)/2 + (1/2 + 2/3)/2) / 2 = 19/24; P@1 = 1; P@5 = P@10 = 2/3 (depth 3, last positive).
    #   Medium: positives {0, 3, 5}, junk {1}: 0 2 5 3 4 6 7 -> ranks 0, 2, 3:
    #           AP = (1 + 7/12 + 17/24) / 3 = 55/72; P@1 = 1; P@5 = P@10 = 3/4 (depth 4).
    #   Hard:   positives {5}, junk {1, 0, 3}: 2 5 4 6 7 -> rank 1: AP = (0 + 1/2)/2 = 1/4; P@1 = 0; P@5 = 1/2.
    # Query 1, ranking 7 6 5 4 3 2 1 0, easy {2}, no hard, junk {0, 1, 3, 4, 5, 6}:
    #   Easy = Medium: 7 2 -> rank 1: AP = 1/4; P@1 = 0; P@5 = 1/2 (depth 2). Hard: no positive, left out.
    gt, ranks = _hand_made()
    scores = revisited_map(ranks, gt)
    assert scores.ks == (1, 5, 10)
    assert scores.easy.map == pytest.approx((19 / 24 + 1 / 4) / 2, abs=1e-15)
    assert scores.medium.map == pytest.approx((55 / 72 + 1 / 4) / 2, abs=1e-15)
    assert scores.hard.map == pytest.approx(1 / 4, abs=1e-15)
    assert scores.easy.mp_at_k == pytest.approx({1: 1 / 2, 5: (2 / 3 + 1 / 2) / 2, 10: (2 / 3 + 1 / 2) / 2})
    assert scores.medium.mp_at_k == pytest.approx({1: 1 / 2, 5: (3 / 4 + 1 / 2) / 2, 10: (3 / 4 + 1 / 2) / 2})
    assert scores.hard.mp_at_k == pytest.approx({1: 0.0, 5: 1 / 2, 10: 1 / 2})
    assert (scores.easy.num_queries, scores.medium.num_queries, scores.hard.num_queries) == (2, 2, 1)
    assert np.isnan(scores.hard.ap[1]) and scores.hard.ap[0] == pytest.approx(1 / 4)
    assert scores.as_dict()["medium_mp_at_5"] == pytest.approx(5 / 8)
    assert scores.as_dict()["hard_num_queries"] == 1.0


def test_junk_is_removed_not_counted_as_negative() -> None:
    # One easy item at position 2, behind two junk items: with the junk removed it is first (AP 1); had the junk
    # counted as negatives it would be third: AP = (0/2 + 1/3) / 2 = 1/6. Where the junk sits changes nothing.
    gt = RevisitedGroundTruth(easy=[[0]], hard=[[]], junk=[[1, 2]])
    assert revisited_map(np.array([[1, 2, 0, 3]]), gt).easy.map == 1.0
    assert revisited_map(np.array([[3, 1, 0, 2]]), gt).easy.map == pytest.approx(0.25)  # 3 0: rank 1
    assert revisited_map(np.array([[3, 0, 1, 2]]), gt).easy.map == pytest.approx(0.25)
    # a hard item is junk for Easy, a positive for Medium, and an easy item junk for Hard
    gt = RevisitedGroundTruth(easy=[[0]], hard=[[1]], junk=[[]])
    scores = revisited_map(np.array([[1, 2, 0]]), gt)
    assert scores.easy.map == pytest.approx(0.25)  # 2 0 -> rank 1
    assert scores.hard.map == 1.0  # 1 2 -> rank 0
    assert scores.medium.map == pytest.approx((1.0 + (1 / 2 + 2 / 3) / 2) / 2)  # ranks 0 and 2


def test_similarities_rank_like_the_ranking_with_ties_by_index() -> None:
    gt, ranks = _hand_made()
    sims = np.empty(ranks.shape)
    np.put_along_axis(sims, ranks, np.linspace(1.0, 0.0, ranks.shape[1])[None].repeat(2, 0), axis=1)
    a, b = revisited_map(ranks, gt), revisited_map(torch.from_numpy(sims), gt)
    assert a.as_dict() == b.as_dict()
    assert revisited_map(torch.from_numpy(sims).bfloat16(), gt).as_dict() == a.as_dict()  # 8 levels: no tie
    tied = RevisitedGroundTruth(easy=[[2]], hard=[[]], junk=[[]])
    # 0, 1, 2 tied: ranked 0 1 2 by index, so 2 is third: AP = (0/2 + 1/3) / 2
    assert revisited_map(np.array([[0.5, 0.5, 0.5, 0.1]]), tied).easy.map == pytest.approx(1 / 6)


def _loop(sims: np.ndarray, gt: RevisitedGroundTruth, ks: tuple[int, ...]) -> dict[str, float]:
    """The protocols written from the definition, one query and one ranked item at a time."""
    out: dict[str, float] = {}
    for protocol, (pos_lists, junk_lists) in PROTOCOL_LISTS.items():
        aps, precisions = [], []
        for q in range(len(sims)):
            positives = {int(j) for name in pos_lists for j in getattr(gt, name)[q]}
            junk = {int(j) for name in junk_lists for j in getattr(gt, name)[q]}
            if not positives:
                continue
            order = sorted(range(sims.shape[1]), key=lambda j, q=q: -sims[q, j])
            kept = [j for j in order if j not in junk]
            ap, found, last = 0.0, 0, 0
            for rank, j in enumerate(kept):
                if j in positives:
                    before = 1.0 if rank == 0 else found / rank
                    found += 1
                    ap += (before + found / (rank + 1)) / 2 / len(positives)
                    last = rank + 1
            aps.append(ap)
            precisions.append([sum(j in positives for j in kept[: min(k, last)]) / min(k, last) for k in ks])
        out[f"{protocol}_map"] = sum(aps) / len(aps) if aps else float("nan")
        for i, k in enumerate(ks):
            out[f"{protocol}_mp_at_{k}"] = sum(p[i] for p in precisions) / len(aps) if aps else float("nan")
        out[f"{protocol}_num_queries"] = float(len(aps))
    return out


def _random_ground_truth(rng: np.random.Generator, n_q: int, n_g: int) -> RevisitedGroundTruth:
    lists: dict[str, list[np.ndarray]] = {"easy": [], "hard": [], "junk": []}
    for _ in range(n_q):
        perm = rng.permutation(n_g)
        cuts = np.sort(rng.integers(0, n_g // 2, 3))  # easy, hard or junk may be empty
        lists["easy"].append(perm[: cuts[0]])
        lists["hard"].append(perm[cuts[0] : cuts[1]])
        lists["junk"].append(perm[cuts[1] : cuts[2]])
    return RevisitedGroundTruth(**lists)


@pytest.mark.parametrize("seed", range(4))
def test_matches_loop_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = _random_ground_truth(rng, 9, 50)
    queries, gallery = rng.normal(size=(9, 6)), rng.normal(size=(50, 6))
    ks = (1, 3, 5, 10, 60)
    got = revisited_map_from_embeddings(queries, gallery, gt, ks).as_dict()
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    gn = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    expected = _loop(qn @ gn.T, gt, ks)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12, nan_ok=True), name
    coarse = np.round(qn @ gn.T, 1)  # many ties
    assert revisited_map(coarse, gt, ks).as_dict() == pytest.approx(_loop(coarse, gt, ks), abs=1e-12, nan_ok=True)


def _official_like(gt: RevisitedGroundTruth) -> dict:
    """The structure of the official gnd_*.pkl: numpy index arrays, boxes, image names."""
    gnd = [
        {"bbx": np.array([1.5, 2.0, 30.0, 40.25]), "easy": gt.easy[q], "hard": gt.hard[q], "junk": gt.junk[q]}
        for q in range(gt.num_queries)
    ]
    return {"gnd": gnd, "imlist": [f"img_{i}" for i in range(8)], "qimlist": ["q0", "q1"]}


def _same(a: RevisitedGroundTruth, b: RevisitedGroundTruth) -> None:
    assert a.num_queries == b.num_queries
    for name in ("easy", "hard", "junk"):
        for x, y in zip(getattr(a, name), getattr(b, name), strict=True):
            np.testing.assert_array_equal(x, y)
    assert a.bbx == b.bbx and a.query_names == b.query_names and a.gallery_names == b.gallery_names


def test_json_round_trip_and_schema(tmp_path: Path) -> None:
    gt, _ = _hand_made()
    full = RevisitedGroundTruth.from_dict(_official_like(gt))
    full.save_json(tmp_path / "gnd.json")
    data = json.loads((tmp_path / "gnd.json").read_text())
    assert data["gnd"][0] == {"easy": [0, 3], "hard": [5], "junk": [1], "bbx": [1.5, 2.0, 30.0, 40.25]}
    assert data["qimlist"] == ["q0", "q1"] and len(data["imlist"]) == 8
    loaded = load_revisited_ground_truth(tmp_path / "gnd.json")
    _same(loaded, full)
    assert loaded.bbx == ((1.5, 2.0, 30.0, 40.25),) * 2


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_needs_the_flag_and_then_loads(tmp_path: Path, protocol: int) -> None:
    gt, _ = _hand_made()
    path = tmp_path / "gnd_roxford5k.pkl"
    data = _official_like(gt)
    data["gnd"][0]["hard"] = [np.int64(5)]  # numpy scalars too
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    with pytest.raises(ValueError, match=r"is a pickle.*--trust-pickle"):
        load_revisited_ground_truth(path)
    renamed = tmp_path / "looks_like.json"  # the content decides, not the name
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="is a pickle"):
        load_revisited_ground_truth(renamed)
    _same(load_revisited_ground_truth(path, trust_pickle=True), RevisitedGroundTruth.from_dict(_official_like(gt)))


class _System:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


class _Eval:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple:
        return (eval, (self.code,))


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_malicious_pickle_is_refused_even_with_the_flag(tmp_path: Path, payload: str) -> None:
    marker = tmp_path / "pwned"
    attack = _System(f"touch {marker}") if payload == "system" else _Eval(f"open({str(marker)!r}, 'w').close() or []")
    path = tmp_path / "gnd.pkl"
    path.write_bytes(pickle.dumps({"gnd": [{"easy": attack, "hard": [], "junk": []}]}))
    for trust in (False, True):
        with pytest.raises(ValueError, match="pickle"):
            load_revisited_ground_truth(path, trust_pickle=trust)
    with pytest.raises(ValueError, match="not plain data"):
        load_revisited_ground_truth(path, trust_pickle=True)
    assert not marker.exists()
    pickle.loads(path.read_bytes())  # the plain unpickler would have run it: the test can fail
    assert marker.exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ('[{"easy": [0]}]', "list 'gnd'"),
        ('{"gnd": [{"easy": [0], "junk": []}]}', "gnd entry 0 has no \\['hard'\\]"),
        ('{"gnd": []}', "no query"),
        ('{"gnd": [{"easy": [0.5], "hard": [], "junk": []}]}', "query 0 easy must hold integer"),
        ('{"gnd": [{"easy": [0], "hard": [-1], "junk": []}]}', "query 0 hard holds a negative"),
        ('{"gnd": [{"easy": [0], "hard": [], "junk": [0]}]}', "gallery index 0 is listed twice"),
        ('{"gnd": [{"easy": [0], "hard": [], "junk": [], "bbx": [1, 2]}]}', "bbx must be 4 finite numbers"),
        ('{"gnd": [{"easy": [0], "hard": [], "junk": []}], "qimlist": ["a", "b"]}', "1 queries but 2 query names"),
        ('{"gnd": [{"easy": [3], "hard": [], "junk": []}], "imlist": ["a", "b"]}', "index 3, but the gallery has 2"),
    ],
)
def test_bad_json_raises_naming_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gnd.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_revisited_ground_truth(path)


def test_missing_file_raises() -> None:
    with pytest.raises(FileNotFoundError):
        load_revisited_ground_truth("/nonexistent/gnd.json")


@pytest.mark.parametrize(
    ("ranking", "ks", "message"),
    [
        (np.zeros((2, 8, 1)), (1,), "shape \\(num_queries, num_gallery\\)"),
        (np.zeros((3, 8)), (1,), "3 rows but the ground truth has 2 queries"),
        (np.zeros((2, 5)), (1,), "index 5, but the gallery has 5"),
        (np.full((2, 8), np.nan), (1,), "NaN"),
        (np.array([[0, 0, 2, 3, 4, 5, 6, 7], list(range(8))]), (1,), "row 0 is not a permutation"),
        (np.zeros((2, 8), dtype=bool), (1,), "similarities \\(floats\\) or gallery indices"),
        (np.zeros((2, 8)), (0,), "ks must be positive"),
        (np.zeros((2, 8)), (), "ks must be positive"),
        ("ranks", (1,), "numpy.ndarray"),
    ],
)
def test_bad_ranking_raises(ranking: object, ks: tuple, message: str) -> None:
    gt, _ = _hand_made()
    with pytest.raises(ValueError, match=message):
        revisited_map(ranking, gt, ks)


def test_bad_embeddings_raise() -> None:
    gt, _ = _hand_made()
    with pytest.raises(ValueError, match="dimension"):
        revisited_map_from_embeddings(np.ones((2, 3)), np.ones((8, 4)), gt)
    with pytest.raises(ValueError, match="gallery has 6"):
        revisited_map_from_embeddings(np.ones((2, 4)), np.ones((6, 4)), gt)
