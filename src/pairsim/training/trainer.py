"""The trainer: P-K batches, any registered loss in either paradigm, checkpoints, evaluation, diagnostics."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pairsim.data.base import ImageSet
from pairsim.data.sampler import PKSampler
from pairsim.data.transforms import build_augmentation
from pairsim.distributed import GlobalPairLoss
from pairsim.losses import PairLoss
from pairsim.models import (
    EXACT,
    EmbeddingModel,
    Execution,
    create_model,
    model_spec,
    read_state,
    resolve_execution,
    save_state,
    to_float,
)
from pairsim.training.compile_watch import CompileWatch
from pairsim.training.config import TrainConfig, dump_config, from_dict, to_dict, upgrade_saved_config
from pairsim.training.diagnostics import similarity_diagnostics
from pairsim.training.evaluate import evaluate_model
from pairsim.training.loss_setup import build_loss
from pairsim.training.metrics_log import MetricsLog
from pairsim.training.parallel import Parallel, resolve_device
from pairsim.training.rank_checkpoint import load_collective, save_collective

log = logging.getLogger(__name__)

BEST_METRIC = "precision_at_1"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run leaves behind.

    Attributes:
        out_dir: the run directory (``config.yaml``, ``metrics.jsonl``, ``last.pt``, ``best.pt``).
        steps: optimisation steps done in total.
        last_checkpoint: the final state.
        best_checkpoint: the state with the best precision@1 on the evaluation split, the validation fold by
            default (``None`` without evaluation).
        best_precision_at_1: that precision@1.
        final_eval: held-out metrics of the final model (``None`` without an evaluation set).
        seconds: wall time of this invocation's training loop (evaluations included).
    """

    out_dir: Path
    steps: int
    last_checkpoint: Path
    best_checkpoint: Path | None
    best_precision_at_1: float | None
    final_eval: dict[str, float] | None
    seconds: float


def config_differences(before: TrainConfig, after: TrainConfig) -> list[tuple[str, Any, Any]]:
    """The dotted keys whose values differ between two configurations, with both values.

    Example:
        >>> a = TrainConfig()
        >>> b = dataclasses.replace(a, seed=1, loss=dataclasses.replace(a.loss, params={"m": 0.3, "gamma": 80.0}))
        >>> config_differences(a, b)
        [('loss.params.m', 0.4, 0.3), ('seed', 0, 1)]
    """
    flat_before, flat_after = _flatten(to_dict(before)), _flatten(to_dict(after))
    missing = object()
    return [
        (key, flat_before.get(key), flat_after.get(key))
        for key in sorted(flat_before.keys() | flat_after.keys())
        if flat_before.get(key, missing) != flat_after.get(key, missing)
    ]


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def lr_factor(step: int, total: int, warmup: int, final_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step``: linear warm-up, then cosine to ``final_ratio``.

    A pure function of the step, so a resumed run needs no scheduler state.

    Example:
        >>> [round(lr_factor(s, 10, 2, 0.0), 3) for s in (0, 1, 2, 6, 9)]
        [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class Trainer:
    """Trains an embedding model on ``train_set`` and evaluates it on the held-out ``eval_set``.

    The trainer never looks at the loss's name: class-level losses are created with one proxy per
    training class, and whatever parameters the loss holds get ``optim.proxy_lr``.

    With several ranks (``parallel``, from torchrun) the model is wrapped in DDP, every rank draws its
    own P-K batch (together: the 1-process batch of ``P x world_size`` classes), pair-wise losses see
    the global batch and class proxies are sharded (:func:`build_loss`); rank 0 logs and evaluates,
    and checkpoints are written collectively (:mod:`pairsim.training.rank_checkpoint`).

    Args:
        config: the run configuration (``sampler.classes_per_batch`` is per rank).
        train_set: training images and labels.
        eval_set: held-out classes for the periodic evaluation (``None``: no evaluation).
        progress: show a progress bar (rank 0 only).
        parallel: this process's place in the run; the process group must be initialised.
    """

    def __init__(
        self,
        config: TrainConfig,
        train_set: ImageSet,
        eval_set: ImageSet | None = None,
        progress: bool = True,
        parallel: Parallel | None = None,
    ) -> None:
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)  # the same initial model on every rank
        self.parallel = parallel = Parallel() if parallel is None else parallel
        self.config, self.train_set, self.eval_set = config, train_set, eval_set
        self.progress = progress and parallel.is_main
        self.out_dir = Path(config.out_dir)
        self.device = parallel.device if parallel.distributed else resolve_device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if config.deterministic:
            # cuBLAS reads this when it creates its handle: before the run's first GEMM on the GPU.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        channels, side = train_set.images.shape[1], train_set.images.shape[-1]
        self.model: EmbeddingModel = create_model(
            config.model.name, config.model.embedding_dim, channels, config.model.pretrained
        )
        self.model.preprocessing = dataclasses.replace(self.model.preprocessing, image_size=side)
        self.model.to(self.device)
        self.execution = resolve_execution(
            config.precision, config.channels_last, config.compile, device=self.device, phase="train"
        )
        self.eval_execution = resolve_execution(
            config.precision, config.channels_last, False, device=self.device, phase="inference"
        )
        self.execution.place(self.model)
        self.loss_fn: nn.Module = build_loss(config, train_set.num_classes, self.model.embedding_dim, parallel)
        self.loss_fn.to(self.device)
        self.forward_model: nn.Module = self.model
        if parallel.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [parallel.local_rank] if self.device.type == "cuda" else None
            self.forward_model = DistributedDataParallel(self.model, device_ids=ids)
            torch.manual_seed(config.seed * 1_000_003 + parallel.rank)  # the ranks' augmentations differ
        if self.execution.compile:
            self.forward_model = typing.cast(nn.Module, torch.compile(self.forward_model))
        self.sampler = PKSampler(
            train_set.labels,
            config.sampler.classes_per_batch,
            config.sampler.samples_per_class,
            seed=config.seed,
            rank=parallel.rank,
            world_size=parallel.world_size,
        )
        self.augment = build_augmentation(config.augment)
        self.labels = torch.from_numpy(train_set.labels.astype(np.int64))
        self.optimizer = torch.optim.AdamW(self._param_groups())
        self.step = 0
        self.best: float | None = None
        self.eval_every = len(self.sampler) if config.eval_every is None else config.eval_every

    def _param_groups(self) -> list[dict[str, Any]]:
        opt = self.config.optim
        groups = [
            {"params": list(self.model.backbone.parameters()), "peak_lr": opt.lr, "weight_decay": opt.weight_decay},
            {
                "params": list(self.model.head.parameters()),
                "peak_lr": opt.head_lr if opt.head_lr is not None else opt.lr,
                "weight_decay": opt.weight_decay,
            },
        ]
        loss_params = [p for p in self.loss_fn.parameters() if p.requires_grad]
        if loss_params:
            groups.append({"params": loss_params, "peak_lr": opt.proxy_lr, "weight_decay": 0.0})
        for group in groups:
            group["lr"] = group["peak_lr"]
        return groups

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run is: the sampler's position is the step.

        Only tensors (weights, optimiser moments, RNG states) and plain data (the config as a dict, ints,
        floats, ``None``), so :func:`~pairsim.models.read_state` loads it with ``weights_only=True``.
        """
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "best": self.best,
            "config": to_dict(self.config),
            "model_spec": model_spec(self.config.model.name, self.model),
            "execution": dataclasses.asdict(self.execution),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the saved config must match this one except for ``steps``, ``device``,
        the execution settings (``precision``, ``channels_last``, ``compile``), ``deterministic`` and
        ``out_dir`` (a run directory may be moved or copied, then resumed).

        Raises:
            ValueError: if the checkpoint comes from a different configuration, or holds no
                optimiser state (a consolidated checkpoint).
        """
        saved = dataclasses.replace(
            from_dict(TrainConfig, upgrade_saved_config(state["config"])),
            steps=self.config.steps,
            device=self.config.device,
            precision=self.config.precision,
            channels_last=self.config.channels_last,
            compile=self.config.compile,
            deterministic=self.config.deterministic,
            out_dir=self.config.out_dir,
        )
        if saved != self.config:
            changed = ", ".join(
                f"{key} ({before!r} -> {after!r})" for key, before, after in config_differences(saved, self.config)
            )
            raise ValueError(
                f"{self.out_dir / 'last.pt'} was written with another configuration: {changed}; resume with the "
                "same settings, or start a new run in another out_dir"
            )
        if "optimizer" not in state:
            raise ValueError("the checkpoint holds no optimiser state (consolidated?): it cannot be resumed")
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        self.step, self.best = int(state["step"]), state["best"]
        # Checkpoints from before the execution settings were written on the exact path.
        written = Execution(**state.get("execution", dataclasses.asdict(EXACT)))
        if written != self.execution:
            log.warning(
                "resuming under %s; the checkpoint was written under %s: the continuation is close but not "
                "bit-exact (set precision, channels_last and compile to match for an exact one)",
                self.execution.describe(),
                written.describe(),
            )

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step on the sampler's batch number ``step``; returns loss, lr and diagnostics."""
        opt = self.config.optim
        factor = lr_factor(step, self.config.steps, opt.warmup_steps, opt.final_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = group["peak_lr"] * factor
        index = self.sampler.batch(step)
        # numpy's row gather: torch's indexing of this (N, C, H, W) uint8 tensor took ~8 ms a batch (N = 151k).
        pixels = torch.from_numpy(self.train_set.images[index])
        x = self.augment(to_float(pixels.to(self.device)))  # (B, C, H, W) in [0, 1], standard strides
        labels = self.labels[torch.from_numpy(index)].to(self.device)  # (B,)
        with self.execution.autocast(self.device):
            embeddings = self.forward_model(self.execution.layout(x)).float()  # (B, D); the loss in float32
        loss = self.loss_fn(embeddings, labels)  # the global batch's loss when distributed
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach()), "lr": opt.lr * factor, **self._diagnostics(embeddings, labels)}

    @property
    def pair_loss(self) -> PairLoss | None:
        """The loss as a :class:`PairLoss` (its pairs: the local batch, or all proxies); ``None`` when
        the proxies are sharded, whose ``(B, C / W)`` similarities are the matrix sharding avoids."""
        loss = self.loss_fn.loss if isinstance(self.loss_fn, GlobalPairLoss) else self.loss_fn
        return loss if isinstance(loss, PairLoss) else None

    def _diagnostics(self, embeddings: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        loss = self.pair_loss
        if loss is None:
            return {}
        with torch.no_grad():
            pairs = loss.make_pairs(embeddings.detach(), labels, None, None)
            return similarity_diagnostics(pairs, self.config.diagnostic_m)

    def evaluate(self) -> dict[str, float] | None:
        """Held-out metrics of the current model (``None`` without an evaluation set), on every rank.

        Rank 0 evaluates; the others wait and receive its result, so all take the same decisions.
        """
        metrics = None
        if self.eval_set is not None and self.parallel.is_main:
            metrics = evaluate_model(
                self.model, self.eval_set, self.config.eval_batch_size, execution=self.eval_execution
            )
        return self.parallel.broadcast(metrics) if self.eval_set is not None else None

    def save(self, path: Path) -> None:
        """Write the state to ``path`` atomically (collectively, with a file per rank, when distributed)."""
        if not self.parallel.distributed:
            save_state(self.state_dict(), path)
            return
        state = self.state_dict()
        summary = {key: state.pop(key) for key in ("model", "model_spec", "config", "best")}
        save_collective(state, {**summary, "step": self.step}, path, self.parallel)

    def load(self, path: Path) -> None:
        """Continue from a checkpoint written by :meth:`save`."""
        if not self.parallel.distributed:
            state = read_state(path)
            if "rank_files" in state:
                raise ValueError(
                    f"{path} was written by {state['world_size']} processes and this run has 1: "
                    f"resume with torchrun --nproc-per-node {state['world_size']}"
                )
            self.load_state_dict(state)
            return
        summary, state = load_collective(path, self.parallel)
        self.load_state_dict({**state, **summary})

    def run(self, resume: bool = False, on_eval: Callable[[int, dict[str, float]], None] | None = None) -> TrainResult:
        """Train to ``config.steps``, continuing from ``last.pt`` when ``resume`` and it exists.

        Args:
            resume: continue from ``OUT_DIR/last.pt`` when it exists.
            on_eval: called with ``(step, metrics)`` after every periodic evaluation, once ``best.pt`` is
                written (a study reports to its pruner here; an exception it raises stops the run).
        """
        last, best_path = self.out_dir / "last.pt", self.out_dir / "best.pt"
        main = self.parallel.is_main
        if resume and last.exists():
            self.load(last)
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            dump_config(self.config, self.out_dir / "config.yaml")
        log = MetricsLog(self.out_dir / "metrics.jsonl", resume_step=self.step if resume else None) if main else None
        bar = _progress_bar(self.config.steps, self.step, self.progress)
        started, final_eval = time.perf_counter(), None
        global_batch = self.sampler.batch_size * self.parallel.world_size
        compiled = CompileWatch() if self.execution.compile else None
        try:
            while self.step < self.config.steps:
                tick = time.perf_counter()
                record = self.train_step(self.step)
                self.step += 1
                record["images_per_s"] = global_batch / (time.perf_counter() - tick)
                if log is not None:
                    log.write("train", self.step, record)
                    if compiled is not None and compiled.first_step is None:
                        log.write("compile", self.step, compiled.after_first_step(time.perf_counter() - tick))
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}")
                due = self.eval_every > 0 and self.step % self.eval_every == 0
                if due or self.step == self.config.steps:
                    final_eval = self.evaluate()
                    if final_eval is not None:
                        if log is not None:
                            log.write("eval", self.step, final_eval)
                        if self.best is None or final_eval[BEST_METRIC] > self.best:
                            self.best = final_eval[BEST_METRIC]
                            self.save(best_path)
                        if on_eval is not None:
                            on_eval(self.step, final_eval)
                if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                    self.save(last)
        finally:
            bar.close()
            if log is not None:
                if compiled is not None and compiled.first_step is not None:
                    log.write("compile", self.step, compiled.summary())
                log.close()
        return TrainResult(
            out_dir=self.out_dir,
            steps=self.step,
            last_checkpoint=last,
            best_checkpoint=best_path if best_path.exists() else None,
            best_precision_at_1=self.best,
            final_eval=final_eval,
            seconds=time.perf_counter() - started,
        )


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True)
