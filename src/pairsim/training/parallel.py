"""The process group a training run belongs to: one process, or torchrun's ranks (gloo on CPU, NCCL on GPUs).

``torchrun --nproc-per-node N -m pairsim train CONFIG`` starts ``N`` processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment;
:func:`init_parallel` reads them and joins the group. A plain ``pairsim train`` sees none of them and
runs as a single process, with no process group at all.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# Rank 0 evaluates while the others wait in a collective: allow for a long evaluation.
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class Parallel:
    """Where this process stands in the run.

    Attributes:
        rank: global rank, ``0 <= rank < world_size``.
        world_size: number of processes.
        local_rank: rank on this machine (picks the GPU).
        backend: ``"gloo"`` or ``"nccl"``; ``None`` for a single process without a process group.

    Example:
        >>> Parallel().is_main, Parallel().distributed, str(Parallel().device)
        (True, False, 'cpu')
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """Whether a process group is in use (more than one process)."""
        return self.backend is not None

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the logs, the shared checkpoint files and evaluates."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        """``cuda:LOCAL_RANK`` with NCCL, else the CPU."""
        return torch.device("cuda", self.local_rank) if self.backend == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        """Wait for every rank (nothing to do in a single process)."""
        if self.distributed:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_equal(self, value: Any) -> bool:
        """Whether every rank holds the same picklable ``value``."""
        if not self.distributed:
            return True
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return all(v == values[0] for v in values)


def resolve_device(name: str) -> torch.device:
    """The device a single-process run uses: ``"auto"`` is the first GPU when CUDA is available, else the CPU.

    Raises:
        ValueError: when a CUDA device is asked for and there is none.

    Example:
        >>> str(resolve_device("cpu"))
        'cpu'
    """
    if name == "auto":
        return torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for, but CUDA is not available (use device=cpu or auto)")
        index = 0 if device.index is None else device.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
        device = torch.device("cuda", index)
    return device


def parallel_from_env(env: Mapping[str, str] | None = None, cuda: bool | None = None) -> Parallel:
    """The :class:`Parallel` that torchrun's environment variables describe (nothing is initialised).

    Args:
        env: the environment (default ``os.environ``).
        cuda: whether GPUs are to be used (default: ``torch.cuda.is_available()``); picks NCCL over gloo.
            ``PAIRSIM_BACKEND`` in ``env`` overrides the choice.

    Raises:
        ValueError: on inconsistent variables (a rank outside the world, a world without ``RANK``).

    Example:
        >>> parallel_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, cuda=False)
        Parallel(rank=1, world_size=2, local_rank=1, backend='gloo')
        >>> parallel_from_env({}, cuda=False)
        Parallel(rank=0, world_size=1, local_rank=0, backend=None)
    """
    env = os.environ if env is None else env
    world_size = int(env.get("WORLD_SIZE", "1"))
    if world_size < 1:
        raise ValueError(f"WORLD_SIZE must be >= 1, got {world_size}")
    if world_size == 1:
        return Parallel()
    if "RANK" not in env:
        raise ValueError("WORLD_SIZE > 1 without RANK: start the ranks with torchrun")
    rank, local_rank = int(env["RANK"]), int(env.get("LOCAL_RANK", env["RANK"]))
    if not 0 <= rank < world_size:
        raise ValueError(f"RANK {rank} outside a world of {world_size}")
    use_cuda = torch.cuda.is_available() if cuda is None else cuda
    backend = env.get("PAIRSIM_BACKEND") or ("nccl" if use_cuda else "gloo")
    if backend not in ("gloo", "nccl"):
        raise ValueError(f"PAIRSIM_BACKEND must be gloo or nccl, got {backend!r}")
    return Parallel(rank, world_size, local_rank, backend)


def _restart_safe_store(parallel: Parallel) -> dist.Store | None:
    """The rendezvous store, with keys of this torchrun attempt only.

    torchrun's c10d rendezvous lends its own store to the workers and keeps it across restarts
    (``--max-restarts``); the process group's keys of the failed attempt are still in it, and the
    restarted ranks then try to connect to the dead ones' addresses (pytorch/pytorch#135712). A prefix
    per restart isolates the attempts. ``None`` (the ``env://`` default) outside that case.
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), parallel.world_size, False, timeout=TIMEOUT
    )
    return dist.PrefixStore(f"pairsim/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)


@contextmanager
def process_group(parallel: Parallel) -> Iterator[Parallel]:
    """Join the process group of ``parallel`` for the duration of the block, then leave it.

    A single-process ``parallel`` initialises nothing. With NCCL the process's GPU is selected first.
    """
    if not parallel.distributed:
        yield parallel
        return
    if parallel.backend == "nccl":
        gpus = torch.cuda.device_count()
        if parallel.local_rank >= gpus:  # NCCL cannot put two ranks on one GPU
            raise ValueError(
                f"LOCAL_RANK {parallel.local_rank} needs GPU {parallel.local_rank}, but this machine has {gpus}: "
                f"start at most {gpus} process(es) per node, or set PAIRSIM_BACKEND=gloo to train on the CPU"
            )
        torch.cuda.set_device(parallel.local_rank)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(
            parallel.backend,
            store=_restart_safe_store(parallel),
            rank=parallel.rank,
            world_size=parallel.world_size,
            timeout=TIMEOUT,
        )
    if dist.get_world_size() != parallel.world_size or dist.get_rank() != parallel.rank:
        raise ValueError(
            f"the process group (rank {dist.get_rank()} of {dist.get_world_size()}) is not "
            f"rank {parallel.rank} of {parallel.world_size}"
        )
    try:
        yield parallel
    finally:
        if owns:
            dist.destroy_process_group()
