"""``pairsim study``: an equal-budget search on validation folds, one test, resumable, on SQLite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest
import scipy.stats
import yaml
from tests.cli.test_train import write_folder

import pairsim.training.run as run_module
from pairsim.cli.main import main
from pairsim.data import ImageSet, load_dataset
from pairsim.jobs.study import counted_trials, loss_study, open_storage, run_worker
from pairsim.jobs.study_config import StudyConfig, load_study_config
from pairsim.jobs.study_final import final_stage, student_t_interval
from pairsim.losses import search_space_for


def write_study(root: Path, **study: Any) -> Path:
    """A base config and a study YAML over a 24-class folder data set (12 training classes in 2 folds)."""
    images = root / "images"
    if not images.exists():
        write_folder(images, num_classes=24, per_class=4)
    base = {
        "data": {"name": "folder", "root": str(images), "image_size": 16, "eval_max_classes": None},
        "model": {"name": "small-cnn", "embedding_dim": 8, "pretrained": False},
        "loss": {"name": "circle", "params": {"m": 0.3, "gamma": 32}},
        "sampler": {"classes_per_batch": 4, "samples_per_class": 2},
        "threads": 1,
    }
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    settings = {
        "name": "tiny",
        "base": "base.yaml",
        "losses": ["circle", "triplet"],
        "trials": 3,
        "folds": 2,
        "seeds": 2,
        "steps": 4,
        "reports": 2,
        "heartbeat_seconds": 1,
        "out_dir": str(root / "out"),
        **study,
    }
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.fixture
def data_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PAIRSIM_DATA", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_study_searches_on_folds_then_tests_once(
    tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_study_config(write_study(tmp_path))
    loaded: list[str] = []

    def recording(*args: Any, **kwargs: Any) -> ImageSet:
        image_set = load_dataset(*args, **kwargs)
        loaded.append(image_set.split)
        return image_set

    monkeypatch.setattr(run_module, "load_dataset", recording)
    run_worker(config, say=lambda _: None)
    assert set(loaded) == {"train", "val"}  # the search never reads a test class
    searched = len(loaded)
    results = final_stage(config)
    assert "test" in loaded[searched:] and "test" not in loaded[:searched]

    on_disk = json.loads((config.directory / "results.json").read_text())
    assert on_disk["study"] == "tiny" and on_disk["budget"] == {"trials_per_loss": 3, "steps_per_trial": 8}
    data = on_disk["data"]
    assert data["name"] == "folder" and data["seed"] == 0
    assert set(data["train_classes"]).isdisjoint(data["test_classes"]) and len(data["test_classes"]) == 12
    assert sorted(k for fold in data["folds"] for k in fold) == sorted(data["train_classes"])
    assert set(on_disk["losses"]) == {"circle", "triplet"}
    for tag, loss in on_disk["losses"].items():
        assert loss["trials"] == 3 and loss["failed"] == 0 and loss["surplus"] == 0  # pruned ones count
        drawn = [tuple(sorted(h["params"].items())) for h in loss["history"]]
        assert len(set(drawn)) == len(drawn) == 3  # the sampler moves on: no point is drawn twice
        space = search_space_for(tag, False).to_dict()
        assert set(loss["best_params"]) == set(space)
        for key, value in loss["best_params"].items():
            assert space[key]["low"] <= value <= space[key]["high"]
        assert set(loss["validation"]) == {"map_at_r"} and 0 <= loss["validation"]["map_at_r"] <= 1
        for metric in ("precision_at_1", "r_precision", "map_at_r"):
            values = loss["test"][metric]["values"]
            assert len(values) == 2 and loss["test"][metric]["mean"] == pytest.approx(sum(values) / 2)
            expected = scipy.stats.t.interval(0.95, 1, loc=sum(values) / 2, scale=scipy.stats.sem(values))
            assert loss["test"][metric]["ci95"] == pytest.approx(list(expected))
        assert 0 <= loss["test_concatenated"]["map_at_r"] <= 1
    assert results["losses"]["circle"]["best_params"] == on_disk["losses"]["circle"]["best_params"]
    table = (config.directory / "results.md").read_text()
    assert "| circle | pair-wise |" in table and "| triplet | pair-wise |" in table
    # Only the best trial of each loss keeps its fold models (for the concatenated evaluation).
    for tag in ("circle", "triplet"):
        assert len(list((config.directory / "trials" / tag).iterdir())) == 1


def test_the_command_writes_the_report_and_a_second_run_resumes(
    tmp_path: Path, data_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_study(tmp_path, trials=2, seeds=2, losses=["circle@class"])
    assert main(["study", "run", str(path)]) == 0
    out = capsys.readouterr().out
    assert "circle@class" in out and "results.json" in out
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 3 and "Gradient fields" in page
    before = json.loads((tmp_path / "out" / "results.json").read_text())
    assert before["losses"]["circle@class"]["paradigm"] == "class-level"
    assert "optim.proxy_lr" in before["losses"]["circle@class"]["best_params"]
    # Run again with a larger budget, by two local worker processes on the same SQLite file: the 2 trials
    # done are kept and 2 more are run.
    assert main(["study", "run", str(path), "--set", "trials=4", "--workers", "2"]) == 0
    after = json.loads((tmp_path / "out" / "results.json").read_text())
    history = after["losses"]["circle@class"]["history"]
    assert [h["number"] for h in history] == [0, 1, 2, 3] and after["losses"]["circle@class"]["trials"] == 4
    assert history[:2] == before["losses"]["circle@class"]["history"]


def test_student_t_interval_is_scipys() -> None:
    values = [0.61, 0.64, 0.58, 0.66, 0.6]
    mean = sum(values) / len(values)
    assert student_t_interval(values) == pytest.approx(
        list(scipy.stats.t.interval(0.95, 4, loc=mean, scale=scipy.stats.sem(values)))
    )
    assert student_t_interval([0.5]) is None and student_t_interval([0.5, 0.5]) == [0.5, 0.5]


def _counts(config: StudyConfig) -> dict[str, list[Any]]:
    storage = open_storage(config, None)
    return {e.tag: loss_study(config, e, storage).get_trials(deepcopy=False) for e in config.entries}


def test_a_killed_worker_loses_no_completed_trial(tmp_path: Path, data_cache: Path) -> None:
    path = write_study(tmp_path, losses=["triplet"], trials=4, steps=40, reports=4, seeds=2)
    config = load_study_config(path)
    env = {**os.environ, "PAIRSIM_DATA": str(data_cache)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "pairsim", "study", "worker", str(path)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline, completed = time.monotonic() + 240, []
    try:
        while time.monotonic() < deadline and worker.poll() is None:
            trials = _counts(config)["triplet"] if (tmp_path / "out" / "study.sqlite3").exists() else []
            completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            if completed and any(t.state == optuna.trial.TrialState.RUNNING for t in trials):
                break
            time.sleep(0.05)
        assert worker.poll() is None, "the worker ended before it could be killed: " + worker.stderr.read().decode()
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.kill()
        worker.wait()
    kept = {t.number: t.value for t in completed}
    time.sleep(3.5)  # past the heartbeat's grace period (2 s, and SQLite's 1 s clock): the killed trial is stale
    assert main(["study", "run", str(path)]) == 0
    trials = _counts(config)["triplet"]
    by_number = {t.number: t for t in trials}
    assert all(
        by_number[n].state == optuna.trial.TrialState.COMPLETE and by_number[n].value == v for n, v in kept.items()
    )
    failed = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(failed) == 1  # the trial that was running when the worker died
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params  # its parameters were tried again
    assert len(counted_trials(loss_study(config, config.entries[0], open_storage(config, None)))) == 4
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["losses"]["triplet"]["trials"] == 4 and results["losses"]["triplet"]["failed"] == 1


@pytest.mark.parametrize(
    ("settings", "extra", "message"),
    [
        ({"losses": ["circle", "no-such-loss"]}, [], "unknown loss 'no-such-loss'"),
        ({"losses": ["circle@pairs"]}, [], "the only paradigm suffix is '@class'"),
        ({"trials": 0}, [], "trials must be >= 1"),
        ({"folds": 1}, [], "folds must be >= 2"),
        ({"set": {"loss.params.bogus": 1.0}}, [], "bogus"),
        ({"colour": "red"}, [], "unknown key(s) ['colour']"),
        ({}, ["--storage", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the study storage"),
        ({}, ["--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_bad_studies_are_one_error_line(
    tmp_path: Path,
    data_cache: Path,
    capsys: pytest.CaptureFixture[str],
    settings: dict[str, Any],
    extra: list[str],
    message: str,
) -> None:
    path = write_study(tmp_path, **settings)
    assert main(["study", "run", str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err


def test_a_loss_without_a_search_space_is_refused(
    tmp_path: Path, data_cache: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import pairsim.jobs.study_config as study_config
    from pairsim.losses import SearchSpace

    def undeclared(name: str, class_level: bool) -> SearchSpace:
        raise NotImplementedError(name)

    monkeypatch.setattr(study_config, "search_space_for", undeclared)
    assert main(["study", "run", str(write_study(tmp_path))]) == 2
    assert capsys.readouterr().err == "error: study: circle declares no search space (PairLoss.search_space)\n"
    with pytest.raises(ValueError, match="at least one parameter"):  # and an empty one cannot be declared
        SearchSpace(())


def test_two_workers_share_one_study_on_postgresql(tmp_path: Path, data_cache: Path) -> None:
    from tests.jobs.postgres import postgres_server

    path = write_study(tmp_path, losses=["circle", "triplet"], trials=4, steps=8, seeds=2)
    config = load_study_config(path)
    env = {**os.environ, "PAIRSIM_DATA": str(data_cache)}
    with postgres_server() as url:
        command = [sys.executable, "-m", "pairsim", "study", "worker", str(path), "--storage", url]
        workers = [
            subprocess.Popen(
                [*command, "--worker-id", str(i)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            for i in range(2)
        ]
        errors = [w.communicate(timeout=600)[1].decode() for w in workers]
        assert [w.returncode for w in workers] == [0, 0], errors
        storage = open_storage(config, url)
        for entry in config.entries:
            trials = loss_study(config, entry, storage).get_trials(deepcopy=False)
            counted = counted_trials(loss_study(config, entry, storage))
            assert len(counted) == 4  # the budget exactly, though two workers filled it
            assert len({t.number for t in trials}) == len(trials)  # no trial twice
            params = [tuple(sorted(t.params.items())) for t in counted]
            assert len(set(params)) == len(params)  # the workers did not repeat each other's trials
            assert {t.user_attrs["worker"] for t in counted} <= {0, 1}
        assert not (tmp_path / "out" / "study.sqlite3").exists()  # everything went to PostgreSQL
        assert main(["study", "run", str(path), "--storage", url]) == 0  # the final stage, from the shared storage
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {name: loss["trials"] for name, loss in results["losses"].items()} == {"circle": 4, "triplet": 4}


def test_a_sweep_trains_every_grid_point_once_and_plots_them(
    tmp_path: Path, data_cache: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_study(tmp_path)
    args = [
        "sweep",
        str(tmp_path / "base.yaml"),
        "--param",
        "loss.params.gamma=16,64",
        "--param",
        "loss.params.m=0.2,0.4",
    ]
    args += ["--loss", "circle", "--loss", "unified", "--steps", "4", "--out", str(tmp_path / "sweep")]
    assert main(args) == 0
    assert "unified" in capsys.readouterr().out
    results = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    for tag in ("circle", "unified"):
        points = results["losses"][tag]["points"]
        grid = sorted((p["params"]["loss.params.gamma"], p["params"]["loss.params.m"]) for p in points)
        assert grid == [(16, 0.2), (16, 0.4), (64, 0.2), (64, 0.4)]  # each point once
        assert all(p["validation"] == pytest.approx(sum(p["folds"]) / 2) for p in points)
    from PIL import Image

    with Image.open(tmp_path / "sweep" / "sweep.png") as image:
        assert image.width > image.height  # gamma and m side by side
    assert main(args) == 0  # resumed: nothing left to train, the same points
    again = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert again["losses"]["circle"]["points"] == results["losses"]["circle"]["points"]
    assert main(["sweep", str(tmp_path / "base.yaml"), "--param", "gamma"]) == 2


def _all_entries() -> list[str]:
    from pairsim.losses import get_loss_class, list_losses

    tags = []
    for name in list_losses():
        cls = get_loss_class(name)
        tags += [name] if cls.supports_pair_wise else []
        tags += [f"{name}@class"] if cls.supports_class_level else []
    return tags


@pytest.mark.parametrize("tag", _all_entries())
def test_every_loss_space_is_sampled_and_trains_a_step(tag: str, tmp_path: Path, data_cache: Path) -> None:
    from pairsim.jobs.study_config import parse_loss
    from pairsim.jobs.study_runs import run_config, train_fold

    config = load_study_config(write_study(tmp_path, losses=[tag], steps=1, reports=1))
    entry = parse_loss(tag)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    params = search_space_for(entry.name, entry.class_level).sample(trial)
    split = {"data.folds": 2, "data.fold": 0, "data.eval_split": "val", "eval_every": 1}
    run = run_config(config, entry, params, split, tmp_path / "run")
    assert (run.loss.name, run.loss.class_level) == (entry.name, entry.class_level)
    for key, value in params.items():  # the sampled values reached the run's configuration
        section, _, leaf = key.partition(".")
        holder = getattr(run, section)
        got = holder.params[leaf.removeprefix("params.")] if leaf.startswith("params.") else getattr(holder, leaf)
        assert got == pytest.approx(value)
    metrics, seconds = train_fold(run)
    assert set(metrics) >= {"map_at_r", "precision_at_1"} and seconds > 0


@pytest.mark.parametrize("preset", sorted((Path(__file__).resolve().parents[2] / "configs" / "studies").glob("*.yaml")))
def test_shipped_study_presets_are_valid(preset: Path) -> None:
    from pairsim.jobs.study import check_runs

    config = load_study_config(preset)
    assert len(config.entries) >= 12 and config.trials >= 20 and config.seeds >= 5  # the Reality Check's budget
    check_runs(config)  # every loss's runs build from the base config and the preset's settings
