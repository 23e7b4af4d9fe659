"""Checkpoints of a multi-process run: a file per rank, and a summary naming a complete set of them.

Rank ``r`` writes its own state (its proxy shard, optimiser state, RNG) to
``ranks/{tag}-step{S}-rank{r}-of-{W}.pt``; once every rank has written, rank 0 writes the summary
(``last.pt`` or ``best.pt``: the model weights, the configuration, the step, the list of rank files)
and only then are older rank files removed. Every file is written atomically, so a process killed at
any moment leaves a summary that points at a complete set of files of one step. The summary is also
a model checkpoint: ``pairsim eval``, ``pairsim index`` and :func:`load_embedding_model` read it as is.
:func:`consolidate_checkpoint` turns it into a single-process file with the whole proxy matrix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pairsim.distributed.shards import ProxyShard, consolidate_shards
from pairsim.models import read_state, save_state
from pairsim.training.parallel import Parallel

RANKS_DIR = "ranks"


def rank_file(summary_path: str | Path, step: int, rank: int, world_size: int) -> Path:
    """Where rank ``rank`` keeps its part of the checkpoint ``summary_path`` at ``step``.

    Example:
        >>> rank_file("runs/x/last.pt", 200, 1, 2).as_posix()
        'runs/x/ranks/last-step0000200-rank1-of-2.pt'
    """
    path = Path(summary_path)
    return path.parent / RANKS_DIR / f"{path.stem}-step{step:07d}-rank{rank}-of-{world_size}.pt"


def save_collective(rank_state: dict[str, Any], summary: dict[str, Any], path: str | Path, parallel: Parallel) -> None:
    """Collective save: every rank must call it at the same step.

    Args:
        rank_state: this rank's own state.
        summary: what rank 0 writes to ``path`` (must hold ``"step"``); ignored on other ranks.
        path: the summary file, e.g. ``OUT_DIR/last.pt``.
        parallel: the run's process group.
    """
    path, step = Path(path), int(summary["step"])
    mine = rank_file(path, step, parallel.rank, parallel.world_size)
    save_state({**rank_state, "step": step, "rank": parallel.rank}, mine)
    parallel.barrier()  # every rank's file of this step is on disk
    if parallel.is_main:
        names = [rank_file(path, step, r, parallel.world_size).name for r in range(parallel.world_size)]
        save_state({**summary, "world_size": parallel.world_size, "rank_files": names}, path)
    parallel.barrier()  # the summary points at this step: older files are no longer needed
    for old in mine.parent.glob(f"{path.stem}-step*-rank{parallel.rank}-of-{parallel.world_size}.pt"):
        if old != mine:
            old.unlink(missing_ok=True)


def load_collective(path: str | Path, parallel: Parallel) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(summary, this rank's state)`` of a checkpoint written by :func:`save_collective`.

    Raises:
        ValueError: if the checkpoint is a single-process one, was written by another number of
            processes, or its rank file is missing or of another step.
    """
    path = Path(path)
    summary = read_state(path)
    if "rank_files" not in summary:
        raise ValueError(f"{path} is a single-process checkpoint: resume it without torchrun")
    if summary["world_size"] != parallel.world_size:
        raise ValueError(
            f"{path} was written by {summary['world_size']} processes and this run has {parallel.world_size}: "
            f"resume with torchrun --nproc-per-node {summary['world_size']} (or consolidate it and start anew)"
        )
    state = _rank_state(path, summary, parallel.rank)
    return summary, state


def _rank_state(path: Path, summary: dict[str, Any], rank: int) -> dict[str, Any]:
    file = path.parent / RANKS_DIR / summary["rank_files"][rank]
    if not file.exists():
        raise ValueError(f"{path} names {file}, which is missing: the checkpoint is incomplete")
    state = read_state(file)
    if state["step"] != summary["step"] or state["rank"] != rank:
        raise ValueError(f"{file} holds step {state['step']} of rank {state['rank']}, not step {summary['step']}")
    return state


def consolidate_checkpoint(path: str | Path, out: str | Path) -> dict[str, Any]:
    """Merge a multi-process checkpoint into one single-process file at ``out`` (written atomically).

    The result holds the model, the configuration, the step and the loss's state as the unsharded
    loss has it (``{"proxies": (C, D)}`` for a class-level loss, from all ranks' shards). Optimiser
    states are not merged: the file evaluates, indexes and initialises, but a run resumes only from
    its own multi-process checkpoint, on the same number of processes.

    Returns:
        The consolidated state that was written.

    Raises:
        ValueError: if ``path`` is not a multi-process checkpoint or a rank file is missing.
    """
    path = Path(path)
    summary = read_state(path)
    if "rank_files" not in summary:
        raise ValueError(f"{path} is already a single-process checkpoint")
    states = [_rank_state(path, summary, r)["loss"] for r in range(summary["world_size"])]
    if any("_extra_state" in s for s in states):  # ShardedProxyLoss: put the proxy matrix back together
        loss_state: dict[str, Any] = {"proxies": consolidate_shards([ProxyShard.from_state_dict(s) for s in states])}
    else:  # GlobalPairLoss wraps the loss as ``loss``: its state is replicated
        loss_state = {key.removeprefix("loss."): value for key, value in states[0].items()}
    consolidated = {
        key: summary[key] for key in ("step", "model", "model_spec", "config", "best") if key in summary
    } | {"loss": loss_state, "consolidated_from": summary["world_size"]}
    save_state(consolidated, out)
    return consolidated
