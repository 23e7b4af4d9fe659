"""``pairsim index build|add|remove|info`` and ``pairsim search`` through ``main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.index.helpers import make_checkpoint, make_folder

from pairsim.cli.main import main


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-index")
    return {
        "root": root,
        "checkpoint": make_checkpoint(root / "model.pt"),
        "other": make_checkpoint(root / "other.pt", seed=1),
        "images": make_folder(root / "images", num_classes=3, per_class=4),
    }


def test_build_info_search_add_remove(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = files["root"] / "idx"
    assert main(["index", "build", str(files["checkpoint"]), str(files["images"]), "--out", str(out)]) == 0
    assert "12 items" in capsys.readouterr().out

    assert main(["index", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["items"], info["labels"], info["index_kind"], info["generation"]) == (12, 3, "flat", 1)

    query = files["images"] / "c2" / "1.png"
    assert main(["search", str(out), str(query), "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 3 and list(hits[0]) == ["id", "label", "score", "path"]
    first = hits[0]
    assert first["label"] == "c2" and first["score"] == pytest.approx(1.0, abs=1e-4) and Path(first["path"]).is_file()
    assert main(["search", str(out), str(query), "-k", "3"]) == 0  # the same hits as a table for people
    table = capsys.readouterr().out
    assert all(word in table.splitlines()[1] for word in ("id", "label", "score", "path"))
    assert all(str(hit["id"]) in table and f"{hit['score']:.4f}" in table for hit in hits)

    assert main(["index", "add", str(out), str(files["images"])]) == 0
    assert "added 12 items" in capsys.readouterr().out
    assert main(["index", "remove", str(out), "1", "2", "3"]) == 0
    assert "21 left" in capsys.readouterr().out
    assert main(["index", "remove", str(out), "4", "2"]) == 2
    assert "no item with id 2" in capsys.readouterr().err
    assert main(["index", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 21


def test_errors_are_reported_with_exit_code_2(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = files["root"] / "idx2"
    assert main(["index", "build", str(files["checkpoint"]), str(files["images"]), "--out", str(out)]) == 0
    capsys.readouterr()
    query = str(files["images"] / "c0" / "0.png")
    assert main(["search", str(out), query, "--checkpoint", str(files["other"])]) == 2
    assert "not the model of this index" in capsys.readouterr().err
    assert main(["search", str(out), query, "-k", "0"]) == 2
    assert "-k must be >= 1" in capsys.readouterr().err
    assert main(["search", str(out), str(files["checkpoint"])]) == 2
    assert "not a decodable image" in capsys.readouterr().err
    assert main(["index", "build", str(files["checkpoint"]), str(files["images"]), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["index", "info", str(files["root"])]) == 2
    assert "not a pairsim index" in capsys.readouterr().err
    assert main(["index", "add", str(out), "no-such-set:test"]) == 2
    assert "neither an existing folder" in capsys.readouterr().err


def test_serve_command_answers_and_stops(files: dict[str, Path]) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    out = files["root"] / "idx-serve"
    assert main(["index", "build", str(files["checkpoint"]), str(files["images"]), "--out", str(out)]) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src"), "PAIRSIM_API_KEY": "k"}
    cmd = [sys.executable, "-m", "pairsim", "serve", str(out), "--port", str(port), "--max-k", "5"]
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "pairsim serve did not start"
            time.sleep(0.2)
        query = (files["images"] / "c0" / "0.png").read_bytes()
        found = httpx.post(url + "/search", params={"k": 5}, files={"image": ("q.png", query)})
        assert found.status_code == 200 and len(found.json()["results"]) == 5
        assert httpx.post(url + "/search", params={"k": 6}, files={"image": ("q.png", query)}).status_code == 422
        assert httpx.delete(url + "/items/1").status_code == 401  # the key from $PAIRSIM_API_KEY
        assert httpx.delete(url + "/items/1", headers={"X-API-Key": "k"}).status_code == 200
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert f"serving {out} on http://127.0.0.1:{port}/" in output


def test_images_may_be_a_data_set_split(
    files: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import numpy as np

    import pairsim.data
    from pairsim.data.base import ImageSet

    calls = []

    def fake_load(name: str, split: str = "train", **kwargs: object) -> ImageSet:
        calls.append((name, split, kwargs["image_size"], kwargs["max_classes"]))
        images = np.random.default_rng(0).integers(0, 255, (4, 1, 16, 16), dtype=np.uint8)
        return ImageSet(images, np.array([0, 0, 1, 1]), ("ga", "na"), ("f1", "f2", "f1", "f2"), name, split)

    monkeypatch.setattr(pairsim.data, "load_dataset", fake_load)
    out = files["root"] / "idx-split"
    assert main(["index", "build", str(files["checkpoint"]), "hangul-fonts:test:2", "--out", str(out)]) == 0
    assert calls == [("hangul-fonts", "test", 16, 2)]
    assert "4 items" in capsys.readouterr().out
    assert main(["search", str(out), str(files["images"] / "c0" / "0.png"), "-k", "4", "--json"]) == 0
    assert {hit["label"] for hit in json.loads(capsys.readouterr().out)} == {"ga", "na"}


def test_cli_kinds_are_the_index_kinds() -> None:
    from pairsim.cli.index import KINDS
    from pairsim.index.vectors import KINDS as INDEX_KINDS

    assert KINDS == INDEX_KINDS
