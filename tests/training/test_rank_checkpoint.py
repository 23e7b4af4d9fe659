"""Per-rank checkpoint files and their summary, in one process (the multi-process runs: tests/distributed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pairsim.distributed import ShardedProxyLoss, shard_ranges
from pairsim.losses import CircleLoss
from pairsim.models import read_state, save_state
from pairsim.training.parallel import Parallel
from pairsim.training.rank_checkpoint import (
    RANKS_DIR,
    consolidate_checkpoint,
    load_collective,
    rank_file,
    save_collective,
)


def test_each_save_replaces_the_previous_rank_file_after_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    for step in (10, 20):
        save_collective({"optimizer": step}, {"step": step, "model": {"w": step}}, path, Parallel())
    summary, state = load_collective(path, Parallel())
    assert summary["step"] == 20 and summary["world_size"] == 1 and state["optimizer"] == 20
    assert [p.name for p in (tmp_path / RANKS_DIR).iterdir()] == [rank_file(path, 20, 0, 1).name]


def test_loading_names_what_is_wrong(tmp_path: Path) -> None:
    single = tmp_path / "single.pt"
    save_state({"step": 1, "model": {}}, single)
    with pytest.raises(ValueError, match="single-process checkpoint"):
        load_collective(single, Parallel())
    path = tmp_path / "last.pt"
    save_collective({}, {"step": 5}, path, Parallel())
    with pytest.raises(ValueError, match="written by 1 processes and this run has 2"):
        load_collective(path, Parallel(1, 2, 1, "gloo"))
    rank_file(path, 5, 0, 1).unlink()
    with pytest.raises(ValueError, match="missing"):
        load_collective(path, Parallel())


def test_sharded_proxies_consolidate_into_the_unsharded_loss_state(tmp_path: Path) -> None:
    full = CircleLoss(num_classes=7, embedding_dim=4)
    ranges = shard_ranges(7, 3, sizes=[3, 0, 4])  # uneven, one rank without classes
    path = tmp_path / "last.pt"
    names = []
    for rank, shard in enumerate(ranges):
        part = ShardedProxyLoss.from_loss(full, shard)
        # What save_collective writes on each rank of a 3-process run.
        file = rank_file(path, 9, rank, 3)
        save_state({"step": 9, "rank": rank, "loss": part.state_dict(), "optimizer": {}}, file)
        names.append(file.name)
    save_state({"step": 9, "model": {"w": torch.ones(2)}, "model_spec": {}, "config": {}, "best": 0.5,
                 "world_size": 3, "rank_files": names}, path)  # fmt: skip
    out = tmp_path / "one.pt"
    consolidated = consolidate_checkpoint(path, out)
    assert torch.equal(consolidated["loss"]["proxies"], full.proxies.detach())
    reloaded = CircleLoss(num_classes=7, embedding_dim=4)
    reloaded.load_state_dict(read_state(out)["loss"])
    assert torch.equal(reloaded.proxies, full.proxies)
    assert consolidated["consolidated_from"] == 3 and consolidated["best"] == 0.5
    with pytest.raises(ValueError, match="already a single-process"):
        consolidate_checkpoint(out, tmp_path / "again.pt")
