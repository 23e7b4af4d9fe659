"""Reading torchrun's environment, and the single-process Parallel (no process group)."""

from __future__ import annotations

import pytest
import torch

from pairsim.training.parallel import Parallel, parallel_from_env, process_group, resolve_device


def test_torchrun_variables_pick_gloo_on_cpu_and_nccl_on_gpus() -> None:
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}
    assert parallel_from_env(env, cuda=False) == Parallel(3, 4, 1, "gloo")
    on_gpus = parallel_from_env(env, cuda=True)
    assert on_gpus.backend == "nccl" and on_gpus.device == torch.device("cuda", 1)
    assert parallel_from_env({**env, "PAIRSIM_BACKEND": "gloo"}, cuda=True).backend == "gloo"
    assert not parallel_from_env(env, cuda=False).is_main


def test_no_torchrun_is_one_process_without_a_group() -> None:
    single = parallel_from_env({}, cuda=True)
    assert single == Parallel() and not single.distributed and single.device == torch.device("cpu")
    assert parallel_from_env({"WORLD_SIZE": "1", "RANK": "0"}, cuda=False) == Parallel()


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"WORLD_SIZE": "2"}, "without RANK"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "outside a world of 2"),
        ({"WORLD_SIZE": "0"}, "WORLD_SIZE must be >= 1"),
        ({"WORLD_SIZE": "2", "RANK": "0", "PAIRSIM_BACKEND": "mpi"}, "gloo or nccl"),
    ],
)
def test_inconsistent_variables_are_named(env: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parallel_from_env(env, cuda=False)


def test_single_process_collectives_are_identities() -> None:
    with process_group(Parallel()) as parallel:
        assert not torch.distributed.is_initialized()
        parallel.barrier()
        assert parallel.broadcast({"a": 1}) == {"a": 1}
        assert parallel.all_equal(5)


def test_resolve_device_picks_the_cpu_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_resolve_device_names_a_missing_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(ValueError, match="has 1 CUDA device"):
        resolve_device("cuda:1")


def test_more_nccl_ranks_than_gpus_is_refused_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(ValueError, match="PAIRSIM_BACKEND=gloo"), process_group(Parallel(1, 2, 1, "nccl")):
        pass
