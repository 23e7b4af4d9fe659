"""The trainer: P-K batches, any registered loss in either paradigm, checkpoints, evaluation, diagnostics."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pairsim.data.base import ImageSet
from pairsim.data.sampler import PKSampler
from pairsim.data.transforms import build_augmentation, to_float
from pairsim.losses import PairLoss, create_loss
from pairsim.models import EmbeddingModel, create_model
from pairsim.training.checkpoint import load_checkpoint, model_spec, save_atomic
from pairsim.training.config import TrainConfig, dump_config, from_dict, to_dict
from pairsim.training.diagnostics import similarity_diagnostics
from pairsim.training.evaluate import evaluate_model
from pairsim.training.metrics_log import MetricsLog

BEST_METRIC = "precision_at_1"


@dataclass(frozen=True)
class TrainResult:
    """What a finished run leaves behind.

    Attributes:
        out_dir: the run directory (``config.yaml``, ``metrics.jsonl``, ``last.pt``, ``best.pt``).
        steps: optimisation steps done in total.
        last_checkpoint: the final state.
        best_checkpoint: the state with the best held-out precision@1 (``None`` without evaluation).
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

    Args:
        config: the run configuration.
        train_set: training images and labels.
        eval_set: held-out classes for the periodic evaluation (``None``: no evaluation).
        progress: show a progress bar.
    """

    def __init__(
        self, config: TrainConfig, train_set: ImageSet, eval_set: ImageSet | None = None, progress: bool = True
    ) -> None:
        if config.threads:
            torch.set_num_threads(config.threads)
        torch.manual_seed(config.seed)
        self.config, self.train_set, self.eval_set, self.progress = config, train_set, eval_set, progress
        self.out_dir = Path(config.out_dir)
        channels, side = train_set.images.shape[1], train_set.images.shape[-1]
        self.model: EmbeddingModel = create_model(
            config.model.name, config.model.embedding_dim, channels, config.model.pretrained
        )
        self.model.preprocessing = dataclasses.replace(self.model.preprocessing, image_size=side)
        self.loss_fn: PairLoss = self._make_loss()
        self.sampler = PKSampler(
            train_set.labels, config.sampler.classes_per_batch, config.sampler.samples_per_class, seed=config.seed
        )
        self.augment = build_augmentation(config.augment)
        self.images = torch.from_numpy(train_set.images)  # (N, C, H, W) uint8, shared with the numpy array
        self.labels = torch.from_numpy(train_set.labels.astype(np.int64))
        self.optimizer = torch.optim.AdamW(self._param_groups())
        self.step = 0
        self.best: float | None = None
        self.eval_every = len(self.sampler) if config.eval_every is None else config.eval_every

    def _make_loss(self) -> PairLoss:
        cfg = self.config.loss
        if cfg.class_level:
            return create_loss(
                cfg.name, num_classes=self.train_set.num_classes, embedding_dim=self.model.embedding_dim, **cfg.params
            )
        return create_loss(cfg.name, **cfg.params)

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
        """Everything needed to continue exactly where the run is: the sampler's position is the step."""
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "loss": self.loss_fn.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best": self.best,
            "config": to_dict(self.config),
            "model_spec": model_spec(self.config.model.name, self.model),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; the saved config must match this one except for ``steps``.

        Raises:
            ValueError: if the checkpoint comes from a different configuration.
        """
        saved = dataclasses.replace(from_dict(TrainConfig, state["config"]), steps=self.config.steps)
        if saved != self.config:
            raise ValueError("the checkpoint was written with a different configuration; resume with the same one")
        self.model.load_state_dict(state["model"])
        self.loss_fn.load_state_dict(state["loss"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best = int(state["step"]), state["best"]

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step on the sampler's batch number ``step``; returns loss, lr and diagnostics."""
        opt = self.config.optim
        factor = lr_factor(step, self.config.steps, opt.warmup_steps, opt.final_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = group["peak_lr"] * factor
        index = torch.from_numpy(self.sampler.batch(step))
        x = self.augment(to_float(self.images[index]))  # (B, C, H, W) in [0, 1]
        labels = self.labels[index]  # (B,)
        embeddings = self.model(x)  # (B, D)
        loss = self.loss_fn(embeddings, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            pairs = self.loss_fn.make_pairs(embeddings.detach(), labels, None, None)
            record = similarity_diagnostics(pairs, self.config.diagnostic_m)
        return {"loss": float(loss.detach()), "lr": opt.lr * factor, **record}

    def evaluate(self) -> dict[str, float] | None:
        """Held-out metrics of the current model (``None`` without an evaluation set)."""
        if self.eval_set is None:
            return None
        return evaluate_model(self.model, self.eval_set, self.config.eval_batch_size)

    def run(self, resume: bool = False) -> TrainResult:
        """Train to ``config.steps``, continuing from ``last.pt`` when ``resume`` and it exists."""
        last, best_path = self.out_dir / "last.pt", self.out_dir / "best.pt"
        if resume and last.exists():
            self.load_state_dict(load_checkpoint(last))
        self.out_dir.mkdir(parents=True, exist_ok=True)
        dump_config(self.config, self.out_dir / "config.yaml")
        log = MetricsLog(self.out_dir / "metrics.jsonl", resume_step=self.step if resume else None)
        bar = _progress_bar(self.config.steps, self.step, self.progress)
        started, final_eval = time.perf_counter(), None
        try:
            while self.step < self.config.steps:
                tick = time.perf_counter()
                record = self.train_step(self.step)
                self.step += 1
                record["images_per_s"] = self.sampler.batch_size / (time.perf_counter() - tick)
                log.write("train", self.step, record)
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}")
                due = self.eval_every > 0 and self.step % self.eval_every == 0
                if due or self.step == self.config.steps:
                    final_eval = self.evaluate()
                    if final_eval is not None:
                        log.write("eval", self.step, final_eval)
                        if self.best is None or final_eval[BEST_METRIC] > self.best:
                            self.best = final_eval[BEST_METRIC]
                            save_atomic(self.state_dict(), best_path)
                if self.step % self.config.checkpoint_every == 0 or self.step == self.config.steps:
                    save_atomic(self.state_dict(), last)
        finally:
            bar.close()
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
