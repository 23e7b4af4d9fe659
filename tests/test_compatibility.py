"""Files written by the previous release load in this one: trainer checkpoints, model files and indexes.

The previous release's code is taken from git (``git archive``) and run in its own process to write the
files; this release then reads them, resumes the run and uses the index. Numerics are unchanged: this
release's resumed loss curve equals the old release's uninterrupted one, and its embeddings equal the
old ones.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pairsim.cli.main import main
from pairsim.index import IndexStore, Searcher, add_images
from pairsim.models import embed, load_model
from pairsim.training.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
#: Round 1 as released (main at 8ae738a): its files must keep loading.
PREVIOUS_RELEASE = "8ae738af51098e186f02cdb12cfd7acdd187bd25"
OVERRIDES = [
    "data.name=synthetic",
    "model.name=small-cnn",
    "model.pretrained=false",
    "model.embedding_dim=8",
    "loss.class_level=true",
    "loss.params={m: 0.25, gamma: 64}",
    "sampler.classes_per_batch=4",
    "sampler.samples_per_class=2",
    "eval_every=0",
    "checkpoint_every=2",
    "threads=1",
    "augment.degrees=5",
]

# Runs in a fresh process on either release's code: the API used here exists in both.
TRAIN = """
import sys
import numpy as np
from PIL import Image
from pairsim.data.base import ImageSet
from pairsim.training.config import load_config
from pairsim.training.trainer import Trainer

out, steps, resume, overrides = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "resume", sys.argv[4:]
rng = np.random.default_rng(0)
patterns = rng.integers(0, 2, (8, 4, 4)).repeat(4, 1).repeat(4, 2)
labels = np.repeat(np.arange(8), 4)
images = (patterns[labels] * 200 + rng.integers(0, 40, (32, 16, 16))).astype(np.uint8)[:, None]
train = ImageSet(images, labels, tuple(f"c{i}" for i in range(8)), tuple(map(str, range(32))), "synthetic", "train")
config = load_config(None, [*overrides, f"out_dir={out}", f"steps={steps}"])
Trainer(config, train, None, progress=False).run(resume=resume)
"""
INDEX = """
import sys
from pathlib import Path
import numpy as np
from PIL import Image
from pairsim.index import build_index
from pairsim.training.checkpoint import load_embedding_model
from pairsim.training.evaluate import embed_images

checkpoint, folder, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
rng = np.random.default_rng(1)
for c in range(3):
    (folder / f"k{c}").mkdir(parents=True)
    for j in range(4):
        Image.fromarray((rng.random((16, 16)) * 80 + 60 * c).astype(np.uint8)).save(folder / f"k{c}" / f"{j}.png")
build_index(checkpoint, str(folder), out / "index")
model, _ = load_embedding_model(checkpoint)
pixels = np.stack([np.array(Image.open(p))[None] for p in sorted(folder.glob("*/*.png"))])
np.save(out / "embeddings.npy", embed_images(model, pixels).numpy())
"""


def run_release(source: Path, script: str, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(source), "PAIRSIM_DEBUG": "1"}
    result = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def previous(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The previous release's source, and what it wrote: a 2-step checkpoint, a 4-step reference, an index."""
    root = tmp_path_factory.mktemp("previous-release")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS_RELEASE, "src"], capture_output=True, timeout=120
    )
    assert archive.returncode == 0, f"the previous release {PREVIOUS_RELEASE} is not in this clone's history: " + (
        archive.stderr.decode()
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(root, filter="data")
    source = root / "src"
    assert not (source / "pairsim" / "models" / "files.py").exists()  # really the old code
    run_release(source, TRAIN, str(root / "run"), "2", "new", *OVERRIDES)
    run_release(source, TRAIN, str(root / "reference"), "4", "new", *OVERRIDES)
    run_release(source, INDEX, str(root / "run" / "last.pt"), str(root / "images"), str(root))
    return {"root": root, "source": source}


def test_an_old_checkpoint_resumes_to_the_old_uninterrupted_curve(previous: dict[str, Path], tmp_path: Path) -> None:
    run = Path(shutil.copytree(previous["root"] / "run", tmp_path / "run"))
    # This release, in a fresh process. The old run trained on the whole training half without folds: resuming
    # it says so (the defaults are now 4 folds and a val split); without these two the resume is refused.
    # The exact path too: the new defaults (channels-last) continue it only to ~1e-6.
    exact = ("precision=fp32", "channels_last=false", "compile=false")
    run_release(
        ROOT / "src", TRAIN, str(run), "4", "resume", *OVERRIDES, "data.folds=1", "data.eval_split=test", *exact
    )
    resumed = read_metrics(run / "metrics.jsonl", "train")
    reference = read_metrics(previous["root"] / "reference" / "metrics.jsonl", "train")
    assert [r["step"] for r in resumed] == [r["step"] for r in reference] == [1, 2, 3, 4]
    for key in ("loss", "sp_mean", "sn_mean"):
        assert [r[key] for r in resumed] == pytest.approx([r[key] for r in reference], rel=1e-6, abs=1e-7), key


def test_an_old_checkpoint_embeds_as_it_did(previous: dict[str, Path]) -> None:
    loaded = load_model(previous["root"] / "run" / "last.pt")
    folder = previous["root"] / "images"
    pixels = np.stack([np.array(Image.open(p))[None] for p in sorted(folder.glob("*/*.png"))])
    old = torch.from_numpy(np.load(previous["root"] / "embeddings.npy"))
    torch.testing.assert_close(embed(loaded.model, pixels), old, rtol=0, atol=1e-6)


def test_an_old_index_opens_searches_and_grows(previous: dict[str, Path], tmp_path: Path) -> None:
    index = Path(shutil.copytree(previous["root"] / "index", tmp_path / "index"))
    store = IndexStore(index)
    assert len(store) == 12 and store.info()["generation"] == 1
    query = (previous["root"] / "images" / "k1" / "2.png").read_bytes()
    hits = Searcher(index, previous["root"] / "run" / "last.pt").search_bytes(query, 3)  # same model fingerprint
    assert hits[0].item.label == "k1" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    result = add_images(index, str(previous["root"] / "images"))
    assert (result.added, result.total) == (12, 24)
    assert len(IndexStore(index).search(np.asarray(Searcher(index).embed_bytes(query)), 24)[0]) == 24


def test_old_files_work_with_the_commands(previous: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root = previous["root"]
    assert main(["search", str(root / "index"), str(root / "images" / "k0" / "1.png"), "-k", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["label"] == "k0"
    assert main(["index", "info", str(root / "index"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"] == 12
