"""A generic trainer: Adam, a learning-rate schedule, seeded mini-batches, history, checkpoints.

The trainer knows nothing about columns. It takes

* a model (any ``torch.nn.Module``),
* a loss function ``loss_fn(model, batch, step) -> dict[str, Tensor]`` whose ``"loss"`` entry is
  the scalar to minimise (the other entries are logged; all must be scalars),
* the data as one tensor or a tuple of tensors sharing their first dimension ``N``,

and runs ``epochs`` passes over the data in mini-batches drawn from a seeded permutation.

Reproducibility and resume
--------------------------
Every source of randomness is seeded from ``TrainConfig.seed``: the shuffling uses its own
``torch.Generator``; each optimisation step runs inside ``torch.random.fork_rng`` with the CPU
(and the current CUDA device's) generator seeded from ``(seed, step)``, so dropout and any other
use of the default generator inside ``loss_fn`` is a function of the step alone, and the caller's
global RNG state is left untouched. A checkpoint holds the model, optimiser and scheduler states,
the shuffling generator's state, the current epoch's permutation, the position within the epoch
and the metrics history; :meth:`Trainer.resume` therefore continues to exactly the parameters an
uninterrupted run reaches (bitwise on CPU; tested).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from neurosim.atomic import atomic_path
from neurosim.config import Config, check_choice, check_positive_int, check_range, check_seed

__all__ = ["TrainConfig", "Trainer", "LossFn", "EvalFn", "lr_factor"]

LossFn = Callable[[torch.nn.Module, tuple[torch.Tensor, ...], int], dict[str, torch.Tensor]]
EvalFn = Callable[[torch.nn.Module], dict[str, float]]

_CHECKPOINT_VERSION = 1
_SEED_MIX = 1_000_003


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(Config):
    """Optimisation settings.

    Attributes:
        epochs: passes over the data (>= 1).
        batch_size: examples per step (>= 1); the last, smaller batch of an epoch is kept unless
            ``drop_last``.
        lr: Adam learning rate (> 0).
        betas: Adam's (beta1, beta2), each in [0, 1).
        weight_decay: L2 penalty added by Adam (>= 0; classic L2, not decoupled).
        schedule: ``"constant"``, ``"cosine"`` (from ``lr`` down to ``lr * min_lr_fraction`` over
            all steps; Loshchilov & Hutter 2017 without restarts) or ``"step"`` (times ``gamma``
            every ``step_epochs`` epochs).
        min_lr_fraction: cosine floor as a fraction of ``lr``, in [0, 1].
        step_epochs: epochs between decays of the step schedule (>= 1).
        gamma: decay factor of the step schedule, in (0, 1].
        warmup_steps: linear warm-up of the learning rate over the first steps (>= 0).
        grad_clip: clip the global gradient norm to this value (``None``: no clipping).
        drop_last: drop the last incomplete batch of each epoch.
        checkpoint_every: write a checkpoint every this many steps (0: never; needs a path).
        seed: seeds the shuffling and the per-step RNG.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    min_lr_fraction: float = 0.0
    step_epochs: int = 10
    gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip: float | None = None
    drop_last: bool = False
    checkpoint_every: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive_int("epochs", self.epochs)
        check_positive_int("batch_size", self.batch_size)
        check_range("lr", self.lr, 0.0, None, lo_inclusive=False)
        for i, b in enumerate(self.betas):
            check_range(f"betas[{i}]", b, 0.0, 1.0, hi_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_choice("schedule", self.schedule, ("constant", "cosine", "step"))
        check_range("min_lr_fraction", self.min_lr_fraction, 0.0, 1.0)
        check_positive_int("step_epochs", self.step_epochs)
        check_range("gamma", self.gamma, 0.0, 1.0, lo_inclusive=False)
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int):
            raise ValueError(f"warmup_steps must be an integer >= 0; got {self.warmup_steps!r}")
        check_range("warmup_steps", self.warmup_steps, 0)
        if self.grad_clip is not None:
            check_range("grad_clip", self.grad_clip, 0.0, None, lo_inclusive=False)
        if isinstance(self.checkpoint_every, bool) or not isinstance(self.checkpoint_every, int):
            raise ValueError(
                f"checkpoint_every must be an integer >= 0; got {self.checkpoint_every!r}"
            )
        check_range("checkpoint_every", self.checkpoint_every, 0)
        check_seed("seed", self.seed, 2**62)


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` for the optimisation step ``step`` (0-based).

    ``steps_per_epoch * epochs`` is the total; the warm-up ramps linearly from ``1/warmup`` to 1.
    """
    total = max(1, config.epochs * steps_per_epoch)
    if config.schedule == "constant":
        factor = 1.0
    elif config.schedule == "cosine":
        progress = min(step, total) / total
        lo = config.min_lr_fraction
        factor = lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = config.gamma ** (step // (config.step_epochs * steps_per_epoch))
    if config.warmup_steps and step < config.warmup_steps:
        factor *= (step + 1) / config.warmup_steps
    return factor


def _as_tensors(data: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ValueError("data must be a tensor or a non-empty sequence of tensors")
    n = tensors[0].shape[0] if tensors[0].ndim else 0
    if n < 1 or any(t.ndim == 0 or t.shape[0] != n for t in tensors):
        raise ValueError(
            "data tensors must share a first dimension N >= 1; got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    return tensors


class Trainer:
    """Train ``model`` on ``data`` by minimising ``loss_fn``.

    Args:
        model: any module; moved to ``device``.
        loss_fn: ``loss_fn(model, batch, step) -> {"loss": scalar, other scalars...}`` where
            ``batch`` is a tuple of tensors ``[b, ...]`` on ``device`` and ``step`` is the 0-based
            global optimisation step (for warm-ups such as
            :func:`neurosim.learning.codistillation_weight`).
        data: a tensor or tuple of tensors ``[N, ...]`` (kept where they are; each batch is
            indexed and moved to ``device``).
        config: :class:`TrainConfig`.
        device: torch device for the model and the batches.
        quiet: no progress bar (it is also hidden when stderr is not a TTY).
        checkpoint_path: where checkpoints go (required when ``config.checkpoint_every > 0``).
        eval_fn: optional ``eval_fn(model) -> {name: float}`` called at the end of every epoch
            in ``eval`` mode without gradients; its values are logged per epoch.
        parameters: the parameters to optimise (default ``model.parameters()``).
        after_step: optional ``after_step(model)`` called without gradients after every
            optimiser step (e.g. a max-norm weight constraint, Srivastava et al. 2014).

    Attributes:
        step: optimisation steps taken so far.
        history: :meth:`history_dataset` gives it as an xarray Dataset.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: LossFn,
        data: torch.Tensor | Sequence[torch.Tensor],
        config: TrainConfig,
        *,
        device: str | torch.device = "cpu",
        quiet: bool = False,
        checkpoint_path: str | Path | None = None,
        eval_fn: EvalFn | None = None,
        parameters: Sequence[torch.nn.Parameter] | None = None,
        after_step: Callable[[torch.nn.Module], None] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig; got {type(config).__name__}")
        if config.checkpoint_every and checkpoint_path is None:
            raise ValueError("checkpoint_path is required when config.checkpoint_every > 0")
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self.data = _as_tensors(data)
        self.n_examples = self.data[0].shape[0]
        self.quiet = quiet
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.eval_fn = eval_fn
        self.after_step = after_step
        if config.drop_last:
            self.steps_per_epoch = self.n_examples // config.batch_size
            if self.steps_per_epoch < 1:
                raise ValueError(
                    f"batch_size ({config.batch_size}) exceeds the {self.n_examples} examples "
                    "with drop_last=True"
                )
        else:
            self.steps_per_epoch = math.ceil(self.n_examples / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        params = list(model.parameters()) if parameters is None else list(parameters)
        self.optimizer = torch.optim.Adam(
            params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(config, s, self.steps_per_epoch)
        )
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.epoch = 0  # completed epochs
        self._perm: torch.Tensor | None = None  # current epoch's permutation
        self._step_records: list[dict[str, float]] = []
        self._epoch_records: list[dict[str, float]] = []

    # ------------------------------------------------------------------ training
    def _batch(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t[index].to(self.device) for t in self.data)

    def _step_seed(self) -> int:
        return (self.config.seed * _SEED_MIX + self.step) % (2**63 - 1)

    def _train_step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        cuda = self.device.type == "cuda"
        devices = [self.device.index or 0] if cuda else []
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            seed = self._step_seed()
            torch.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.manual_seed(seed)
            self.model.train()
            terms = self.loss_fn(self.model, batch, self.step)
            if not isinstance(terms, dict) or "loss" not in terms:
                raise ValueError("loss_fn must return a dict with a 'loss' entry")
            loss = terms["loss"]
            if loss.ndim != 0:
                raise ValueError(f"loss_fn's 'loss' must be a scalar; got {tuple(loss.shape)}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]],
                    self.config.grad_clip,
                )
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            if self.after_step is not None:
                with torch.no_grad():
                    self.after_step(self.model)
        record = {key: float(value.detach()) for key, value in terms.items()}
        record["lr"] = float(lr)
        return record

    def _end_epoch(self, records: list[dict[str, float]]) -> None:
        summary = {}
        for key in records[0] if records else ():
            summary[f"epoch_{key}"] = float(np.mean([r[key] for r in records]))
        if self.eval_fn is not None:
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                metrics = self.eval_fn(self.model)
            self.model.train(was_training)
            for key, value in metrics.items():
                summary[f"eval_{key}"] = float(value)
        self._epoch_records.append(summary)

    def fit(self, *, max_steps: int | None = None) -> xr.Dataset:
        """Train until ``config.epochs`` are done (or ``max_steps`` total steps, to interrupt).

        Returns:
            The history Dataset (:meth:`history_dataset`).
        """
        from tqdm.auto import tqdm

        stop = self.total_steps if max_steps is None else min(max_steps, self.total_steps)
        bar = tqdm(
            total=self.total_steps,
            initial=self.step,
            desc="train",
            unit="step",
            disable=self.quiet or None,
            leave=False,
        )
        try:
            while self.step < stop:
                if self._perm is None:
                    self._perm = torch.randperm(self.n_examples, generator=self.generator)
                within = self.step - self.epoch * self.steps_per_epoch
                lo = within * self.config.batch_size
                index = self._perm[lo : lo + self.config.batch_size]
                record = self._train_step(self._batch(index))
                self._step_records.append(record)
                self.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4g}", refresh=False)
                if within + 1 == self.steps_per_epoch:
                    self._end_epoch(self._step_records[-self.steps_per_epoch :])
                    self.epoch += 1
                    self._perm = None
                every = self.config.checkpoint_every
                if every and self.step % every == 0:
                    self.save_checkpoint(self.checkpoint_path)
        finally:
            bar.close()
        return self.history_dataset()

    # ------------------------------------------------------------------ history
    def history_dataset(self) -> xr.Dataset:
        """Metrics so far: per-step variables on dim ``step`` (1-based), per-epoch on ``epoch``.

        Per-step: every ``loss_fn`` entry and ``lr``. Per-epoch: ``epoch_<key>`` (mean of the
        step values over the epoch) and ``eval_<key>`` from ``eval_fn``.
        """
        data_vars: dict[str, Any] = {}
        for key in self._step_records[0] if self._step_records else ():
            values = np.array([r.get(key, np.nan) for r in self._step_records])
            data_vars[key] = (
                "step",
                values,
                {"units": "1", "long_name": f"{key} per optimisation step"},
            )
        keys: list[str] = []
        for r in self._epoch_records:
            keys.extend(k for k in r if k not in keys)
        for key in keys:
            values = np.array([r.get(key, np.nan) for r in self._epoch_records])
            data_vars[key] = ("epoch", values, {"units": "1", "long_name": f"{key} per epoch"})
        if "lr" in data_vars:
            data_vars["lr"][2]["long_name"] = "learning rate used at the step"
        coords = {
            "step": np.arange(1, len(self._step_records) + 1),
            "epoch": np.arange(1, len(self._epoch_records) + 1),
        }
        return xr.Dataset(data_vars, coords=coords)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimiser, scheduler, RNG, history."""
        return {
            "version": _CHECKPOINT_VERSION,
            "config_toml": self.config.to_toml(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "perm": self._perm,
            "step": self.step,
            "epoch": self.epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "n_examples": self.n_examples,
            "step_records": self._step_records,
            "epoch_records": self._epoch_records,
        }

    def save_checkpoint(self, path: str | Path | None = None) -> Path:
        """Write :meth:`state_dict` to ``path`` (default ``checkpoint_path``) atomically."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("save_checkpoint needs a path (none given, no checkpoint_path)")
        with atomic_path(path) as tmp:
            torch.save(self.state_dict(), tmp)
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Restore a checkpoint written by a trainer with the same config and data size."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"checkpoint {str(path)!r} does not exist")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("version") != _CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint {str(path)!r} has an unknown format version")
        if state["config_toml"] != self.config.to_toml():
            raise ValueError(
                f"checkpoint {str(path)!r} was written with a different TrainConfig:\n"
                f"{state['config_toml']}"
            )
        if state["n_examples"] != self.n_examples:
            raise ValueError(
                f"checkpoint {str(path)!r} was written for {state['n_examples']} examples; "
                f"data has {self.n_examples}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu())
        self._perm = None if state["perm"] is None else state["perm"].cpu()
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self._step_records = [dict(r) for r in state["step_records"]]
        self._epoch_records = [dict(r) for r in state["epoch_records"]]

    def resume(self, path: str | Path, *, max_steps: int | None = None) -> xr.Dataset:
        """Load the checkpoint at ``path`` and continue training; returns the history."""
        self.load_checkpoint(path)
        return self.fit(max_steps=max_steps)
