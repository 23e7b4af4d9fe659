"""One error convention for every command: a user's mistake is one ``error:`` line on stderr and exit code 2;
the traceback only with ``--debug`` or ``PAIRSIM_DEBUG=1``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.cli.test_train import write_folder

from pairsim.cli.main import build_parser, main
from pairsim.models import create_model, model_spec, save_state


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if not line.startswith("note: ")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def run_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A tiny pair-wise Circle run on 12 folder classes (6 training classes, 4 of them outside the val fold)."""
    monkeypatch.setenv("PAIRSIM_DATA", str(tmp_path / "cache"))
    config = {
        "data": {"name": "folder", "root": str(write_folder(tmp_path / "images")), "image_size": 16},
        "model": {"name": "small-cnn", "embedding_dim": 8, "pretrained": False},
        "loss": {"name": "circle", "params": {"m": 0.3, "gamma": 32}},
        "sampler": {"classes_per_batch": 3, "samples_per_class": 2},
        "steps": 2,
        "eval_every": 0,
        "threads": 1,
        "out_dir": str(tmp_path / "run"),
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_an_unknown_config_section(run_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", str(run_config), "--set", "lossx.name=circle")
    assert_one_error_line(code, err, "unknown key(s) ['lossx']", "docs/configuration.md")


def test_a_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", str(tmp_path / "nowhere.yaml"))
    assert_one_error_line(code, err, "no configuration file at", "nowhere.yaml")
    code, _, err = run_cli(capsys, "demo", "--config", str(tmp_path / "nowhere.yaml"))
    assert_one_error_line(code, err, "no configuration file at")


def test_more_classes_per_batch_than_the_data_set_has(run_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", str(run_config), "--set", "sampler.classes_per_batch=50", "--no-progress")
    assert_one_error_line(code, err, "P=50", "set sampler.classes_per_batch to at most 4")


def test_resume_after_a_changed_config_names_the_keys(run_config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "train", str(run_config), "--no-progress")[0] == 0
    changed = ["--set", "optim.lr=0.5", "--set", "seed=3", "--set", "steps=4", "--resume", "--no-progress"]
    code, _, err = run_cli(capsys, "train", str(run_config), *changed)
    assert_one_error_line(code, err, "another configuration", "optim.lr (0.001 -> 0.5)", "seed (0 -> 3)")
    assert "steps" not in err  # more steps is what a resume is for


def test_changing_the_loss_drops_its_parameters_with_a_note(
    run_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_cli(capsys, "train", str(run_config), "--set", "loss.name=triplet", "--no-progress")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    assert any("loss.params.m dropped" in n for n in notes) and any("loss.params.gamma dropped" in n for n in notes)
    assert "trained 2 steps" in out
    code, _, err = run_cli(capsys, "train", str(run_config), "--set", "loss.params.margn=0.1", "--no-progress")
    assert_one_error_line(code, err, "margn")


def test_eval_of_a_file_that_is_not_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name, content in (("notes.pt", b"these are notes, not a checkpoint"), ("empty.pt", b"")):
        (tmp_path / name).write_bytes(content)
        code, _, err = run_cli(capsys, "eval", str(tmp_path / name), "folder", "--out", str(tmp_path / "o"))
        assert_one_error_line(code, err, name, "is not a pairsim checkpoint")
    save_state({"step": 3}, tmp_path / "state.pt")  # a torch file without a model
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "state.pt"), "folder", "--out", str(tmp_path / "o"))
    assert_one_error_line(code, err, "no model_spec / model")


def test_consolidate_of_a_single_process_or_missing_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = create_model("small-cnn", embedding_dim=4, in_channels=1)
    save_state({"model": model.state_dict(), "model_spec": model_spec("small-cnn", model)}, tmp_path / "one.pt")
    code, _, err = run_cli(capsys, "consolidate", str(tmp_path / "one.pt"))
    assert_one_error_line(code, err, "already a single-process checkpoint")
    code, _, err = run_cli(capsys, "consolidate", str(tmp_path / "none.pt"))
    assert_one_error_line(code, err, "no checkpoint at")


def test_demo_with_a_bad_override(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "demo", "--set", "sampler.classes_per_batch=many")
    assert_one_error_line(code, err, "sampler.classes_per_batch", "expected int")
    code, _, err = run_cli(capsys, "demo", "--set", "nosuchkey")
    assert_one_error_line(code, err, "key=value")


def test_usage_errors_are_one_line_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.splitlines() == ["error: the following arguments are required: config (see `pairsim train --help`)"]


def test_debug_shows_the_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match="no configuration file"):
        main(["--debug", "train", str(tmp_path / "x.yaml")])
    with pytest.raises(FileNotFoundError):
        main(["train", str(tmp_path / "x.yaml"), "--debug"])  # after the command, too
    monkeypatch.setenv("PAIRSIM_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(["train", str(tmp_path / "x.yaml")])


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PAIRSIM_DEBUG"}
    command = [sys.executable, "-m", "pairsim", "eval", str(tmp_path / "missing.pt"), "folder"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert result.returncode == 2 and result.stderr.splitlines() == [f"error: no checkpoint at {tmp_path}/missing.pt"]
    result = subprocess.run([*command[:3], "--debug", *command[3:]], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    from pairsim import __version__

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"pairsim {__version__}"
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "demo" in text and "serve" in text and "Entry point" not in text  # not the module docstring
    lines = [line.split(maxsplit=1) for line in text.split("commands:")[1].splitlines()[2:] if line.startswith("    ")]
    commands = ["demo", "train", "study", "sweep", "consolidate", "eval", "index", "search", "serve"]
    assert [name for name, _ in lines] == commands
    summaries = {a.dest: a.help for a in build_parser()._subparsers._group_actions[0]._choices_actions}  # type: ignore
    assert all(summary.strip() == summaries[name] for name, summary in lines)  # each on its one line


def test_every_argument_has_help() -> None:
    missing = []
    parsers = [("pairsim", build_parser())]
    while parsers:
        name, parser = parsers.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                for sub_name, sub in action.choices.items():
                    if not helps.get(sub_name):
                        missing.append(f"{name} {sub_name}")
                    parsers.append((f"{name} {sub_name}", sub))
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []
