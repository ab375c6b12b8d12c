"""A generic trainer: Adam, a learning-rate schedule, seeded mini-batches, history, checkpoints.

The trainer knows nothing about columns. It takes

* a model (any ``torch.nn.Module``),
* a loss function ``loss_fn(model, batch, step) -> dict[str, Tensor]`` whose ``"loss"`` entry is
  the scalar to minimise (the other entries are logged: scalars, or ``[R]`` per replica),
* the data as one tensor or a tuple of tensors sharing their first dimension ``N``,

and runs the optimisation in mini-batches drawn from seeded permutations.

Two ways to count
-----------------
* ``TrainConfig.steps == 0`` (epochs): ``epochs`` passes over the data; the last batch of an
  epoch is smaller unless ``drop_last``; the schedule spans ``epochs * steps_per_epoch`` steps.
* ``TrainConfig.steps > 0`` (a stream): exactly ``steps`` steps of exactly ``batch_size``
  examples each, taken in order from successive seeded permutations of the data (a batch may
  straddle two passes); the schedule spans ``steps``. When ``N`` is a multiple of the batch size
  this draws the same batches as the epoch way.

Labelled and unlabelled data, and replicas
------------------------------------------
* ``unlabelled=``: a second dataset, sampled as its own stream of ``unlabelled_batch_size``
  examples per step (stream only). With the same tensors as the data (its labels, e.g.
  :data:`neurosim.objectives.IGNORE_LABEL`, are never read by a label term) its examples are
  appended to every batch: ``batch_size`` labelled then ``unlabelled_batch_size`` unlabelled.
  Datasets may be mappings ``{name: tensor}`` (the batch is then a dict); an unlabelled mapping
  with names of its own (e.g. ``{"video": ...}`` beside ``{"responses", "labels"}``) is passed
  beside the labelled tensors instead, whatever its shapes.
* Replicas: ``data=[d_0, ..., d_{R-1}]`` (a list, one dataset per replica of a model stacked by
  :mod:`neurosim.replicas`) with ``seeds=[s_0, ...]``: replica ``r`` draws its own batches from
  its own data with its own seed (its data order is that of the same model trained alone with
  seed ``s_r``), and the batch the loss sees has a replica axis: every tensor is
  ``[batch, R, ...]``. The loss must be the sum of the replicas' losses; each replica's gradient
  is clipped by its own norm (:func:`neurosim.replicas.clip_grad_norm_per_replica_`), and Adam is
  elementwise, so every replica takes the optimiser step it would take alone.

Reproducibility and resume
--------------------------
Every source of randomness is seeded: the shuffling uses its own ``torch.Generator`` per stream
(from ``TrainConfig.seed``, or the replica's seed); each optimisation step runs inside
``torch.random.fork_rng`` with the CPU (and the current CUDA device's) generator seeded from
``(seed, step)``, so dropout and any other use of the default generator inside ``loss_fn`` is a
function of the step alone, and the caller's global RNG state is left untouched. A checkpoint
holds the model, optimiser and scheduler states, every stream's generator, permutation and
position, and the metrics history; :meth:`Trainer.resume` therefore continues to exactly the
parameters an uninterrupted run reaches (bitwise on CPU; tested).

On a CPU, :meth:`Trainer.fit` flushes denormal floats to zero while it trains
(``TrainConfig.flush_denormals``, :mod:`neurosim.denormals`): the same model, faster.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import xarray as xr

from neurosim.atomic import atomic_path
from neurosim.config import (
    Config,
    check_choice,
    check_int,
    check_range,
    check_seed,
)
from neurosim.denormals import flushing_denormals

__all__ = ["TrainConfig", "Trainer", "LossFn", "EvalFn", "lr_factor"]

LossFn = Callable[[torch.nn.Module, tuple[torch.Tensor, ...], int], dict[str, torch.Tensor]]
EvalFn = Callable[[torch.nn.Module], dict[str, float]]

_CHECKPOINT_VERSION = 2
_SEED_MIX = 1_000_003
_UNLABELLED_SEED = 7_777_777


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig(Config):
    """Optimisation settings.

    Attributes:
        epochs: passes over the data (>= 1; unused when ``steps > 0``).
        steps: optimisation steps of a stream (see the module doc); 0 counts in ``epochs``.
        batch_size: examples per step (>= 1); in epochs the last, smaller batch of an epoch is
            kept unless ``drop_last``.
        unlabelled_batch_size: unlabelled examples appended to every batch (``unlabelled=``
            data; needs ``steps > 0``).
        lr: Adam learning rate (> 0).
        betas: Adam's (beta1, beta2), each in [0, 1).
        weight_decay: L2 penalty added by Adam (>= 0; classic L2, not decoupled).
        adam: torch's Adam implementation: ``"fused"`` (one kernel per parameter, the
            fastest), ``"foreach"`` (multi-tensor passes) or ``"for-loop"`` (one parameter at a
            time); the same update up to float rounding.
        schedule: ``"constant"``, ``"cosine"`` (from ``lr`` down to ``lr * min_lr_fraction`` over
            all steps; Loshchilov & Hutter 2017 without restarts) or ``"step"`` (times ``gamma``
            every ``step_epochs`` epochs).
        min_lr_fraction: cosine floor as a fraction of ``lr``, in [0, 1].
        step_epochs: epochs between decays of the step schedule (>= 1).
        gamma: decay factor of the step schedule, in (0, 1].
        warmup_steps: linear warm-up of the learning rate over the first steps (>= 0).
        grad_clip: clip the gradient norm (of each replica) to this value (``None``: no clip).
        drop_last: drop the last incomplete batch of each epoch.
        checkpoint_every: write a checkpoint every this many steps (0: never; needs a path).
        flush_denormals: flush denormal floats (below 1.2e-38) to zero on the thread that runs
            :meth:`Trainer.fit` while it trains, which is all the work with one torch thread
            (:mod:`neurosim.denormals`: CPUs compute with them many times slower; a 25 %
            faster lc-backprop step here). False computes with them, as torch does by
            default. Ignored on a GPU.
        seed: seeds the shuffling and the per-step RNG.
    """

    epochs: int = 10
    steps: int = 0
    batch_size: int = 64
    unlabelled_batch_size: int = 0
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    adam: Literal["fused", "foreach", "for-loop"] = "fused"
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    min_lr_fraction: float = 0.0
    step_epochs: int = 10
    gamma: float = 0.1
    warmup_steps: int = 0
    grad_clip: float | None = None
    drop_last: bool = False
    checkpoint_every: int = 0
    flush_denormals: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1, 10**6)
        check_int("steps", self.steps, 0, 10**8)
        check_int("batch_size", self.batch_size, 1, 10**6)
        check_int("unlabelled_batch_size", self.unlabelled_batch_size, 0, 10**6)
        if self.unlabelled_batch_size and not self.steps:
            raise ValueError("unlabelled_batch_size > 0 needs steps > 0 (a stream)")
        check_range("lr", self.lr, 0.0, None, lo_inclusive=False)
        for i, b in enumerate(self.betas):
            check_range(f"betas[{i}]", b, 0.0, 1.0, hi_inclusive=False)
        check_range("weight_decay", self.weight_decay, 0.0)
        check_choice("adam", self.adam, ("fused", "foreach", "for-loop"))
        check_choice("schedule", self.schedule, ("constant", "cosine", "step"))
        check_range("min_lr_fraction", self.min_lr_fraction, 0.0, 1.0)
        check_int("step_epochs", self.step_epochs, 1)
        check_range("gamma", self.gamma, 0.0, 1.0, lo_inclusive=False)
        check_int("warmup_steps", self.warmup_steps, 0)
        if self.grad_clip is not None:
            check_range("grad_clip", self.grad_clip, 0.0, None, lo_inclusive=False)
        check_int("checkpoint_every", self.checkpoint_every, 0)
        check_seed("seed", self.seed, 2**62)


def lr_factor(config: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Multiplier of ``config.lr`` for the optimisation step ``step`` (0-based).

    The run has ``config.steps`` steps (a stream) or ``steps_per_epoch * epochs``; the warm-up
    ramps linearly from ``1/warmup`` to 1.
    """
    total = config.steps or max(1, config.epochs * steps_per_epoch)
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


def _as_tensors(data: Any, name: str = "data") -> tuple[tuple[str, ...] | None, tuple]:
    """``(keys or None, tensors)`` of a dataset: a tensor, a sequence of tensors, or a mapping
    ``{name: tensor}``, all sharing their first dimension ``N >= 1``."""
    keys = None
    if isinstance(data, Mapping):
        keys = tuple(str(k) for k in data)
        data = tuple(data.values())
    tensors = (data,) if isinstance(data, torch.Tensor) else tuple(data)
    if not tensors or not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ValueError(f"{name} must be a tensor or a non-empty sequence of tensors")
    n = tensors[0].shape[0] if tensors[0].ndim else 0
    if n < 1 or any(t.ndim == 0 or t.shape[0] != n for t in tensors):
        raise ValueError(
            f"{name} tensors must share a first dimension N >= 1; got shapes "
            f"{[tuple(t.shape) for t in tensors]}"
        )
    return keys, tensors


class _Stream:
    """Successive seeded permutations of ``range(n)`` read ``batch`` indices at a time."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch = n, batch
        self.generator = torch.Generator().manual_seed(seed)
        self.perm: torch.Tensor | None = None
        self.pos = 0

    def next(self) -> torch.Tensor:
        parts, need = [], self.batch
        while need:
            if self.perm is None or self.pos == self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
            take = min(need, self.n - self.pos)
            parts.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            need -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), "perm": self.perm, "pos": self.pos}

    def load(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
        self.perm = None if state["perm"] is None else state["perm"].cpu()
        self.pos = int(state["pos"])


class Trainer:
    """Train ``model`` on ``data`` by minimising ``loss_fn``.

    Args:
        model: any module; moved to ``device``.
        loss_fn: ``loss_fn(model, batch, step) -> {"loss": scalar, other values...}`` where
            ``batch`` is a tuple of tensors ``[b, ...]`` (``[b, R, ...]`` for replicas) on
            ``device`` and ``step`` is the 0-based global optimisation step (for warm-ups such
            as :func:`neurosim.learning.codistillation_weight`). Other values are scalars or
            ``[R]`` (one per replica).
        data: a tensor or tuple of tensors ``[N, ...]``, or a list of those (one per replica;
            needs ``config.steps > 0``). Kept where they are; each batch is indexed and moved.
        config: :class:`TrainConfig`.
        device: torch device for the model and the batches.
        quiet: no progress bar (it is also hidden when stderr is not a TTY).
        checkpoint_path: where checkpoints go (required when ``config.checkpoint_every > 0``).
        eval_fn: optional ``eval_fn(model) -> {name: float}`` called in ``eval`` mode without
            gradients at the end of every epoch (epochs) or once at the end (a stream); its
            values are logged per epoch.
        parameters: the parameters to optimise (default ``model.parameters()``).
        after_step: optional ``after_step(model)`` called without gradients after every
            optimiser step (e.g. a max-norm weight constraint, Srivastava et al. 2014).
        unlabelled: optional unlabelled data with the same tensors as ``data`` (a list with
            replicas), ``config.unlabelled_batch_size`` of them appended to every batch.
        seeds: one shuffling seed per replica (default ``config.seed + r``).

    Attributes:
        step: optimisation steps taken so far.
        n_replicas: ``R`` (1 without replicas).
        history: :meth:`history_dataset` gives it as an xarray Dataset.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        loss_fn: LossFn,
        data: Any,
        config: TrainConfig,
        *,
        device: str | torch.device = "cpu",
        quiet: bool = False,
        checkpoint_path: str | Path | None = None,
        eval_fn: EvalFn | None = None,
        parameters: Sequence[torch.nn.Parameter] | None = None,
        after_step: Callable[[torch.nn.Module], None] | None = None,
        unlabelled: Any = None,
        seeds: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig; got {type(config).__name__}")
        if config.checkpoint_every and checkpoint_path is None:
            raise ValueError("checkpoint_path is required when config.checkpoint_every > 0")
        self.config = config
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.loss_fn = loss_fn
        self._set_data(data)
        self.separate = False
        self.unlabelled_keys = None
        self.unlabelled = self._unlabelled(unlabelled)
        self.seeds = self._seeds(seeds)
        self.n_examples = self.data[0][0].shape[0]
        self.quiet = quiet
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.eval_fn = eval_fn
        self.after_step = after_step
        self._set_schedule()
        self._set_optimizer(model, parameters)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.step = 0
        self.epoch = 0  # completed epochs
        self._perm: torch.Tensor | None = None  # current epoch's permutation (epochs)
        self._step_records: list[dict[str, Any]] = []
        self._epoch_records: list[dict[str, float]] = []

    def _set_data(self, data: Any) -> None:
        """Check ``data``; set ``replicated``, ``keys``, ``data`` (per replica), ``n_replicas``."""
        config = self.config
        self.replicated = isinstance(data, list)
        datasets = data if self.replicated else [data]
        if self.replicated and not config.steps:
            raise ValueError("replicas (data as a list) need config.steps > 0 (a stream)")
        if not datasets:
            raise ValueError("data must hold at least one dataset")
        parsed = [_as_tensors(d, f"data[{i}]") for i, d in enumerate(datasets)]
        self.keys = parsed[0][0]
        if any(keys != self.keys for keys, _ in parsed):
            raise ValueError("every replica's data must have the same keys")
        self.data = [tensors for _keys, tensors in parsed]
        self.n_replicas = len(self.data)

    def _set_schedule(self) -> None:
        """Set ``steps_per_epoch``, ``total_steps`` and ``streams`` (None for epochs)."""
        config = self.config
        if config.steps:
            self.steps_per_epoch = math.ceil(self.n_examples / config.batch_size)
            self.total_steps = config.steps
            self.streams = [
                [_Stream(d[0].shape[0], config.batch_size, s)]
                + (
                    []
                    if self.unlabelled is None
                    else [
                        _Stream(
                            u[0].shape[0],
                            config.unlabelled_batch_size,
                            (s * _SEED_MIX + _UNLABELLED_SEED) % (2**63 - 1),
                        )
                    ]
                )
                for d, u, s in zip(
                    self.data,
                    self.unlabelled or [None] * self.n_replicas,
                    self.seeds,
                    strict=True,
                )
            ]
        else:
            if config.drop_last:
                self.steps_per_epoch = self.n_examples // config.batch_size
                if self.steps_per_epoch < 1:
                    raise ValueError(
                        f"batch_size ({config.batch_size}) exceeds the {self.n_examples} "
                        "examples with drop_last=True"
                    )
            else:
                self.steps_per_epoch = math.ceil(self.n_examples / config.batch_size)
            self.total_steps = self.steps_per_epoch * config.epochs
            self.streams = None

    def _set_optimizer(
        self, model: torch.nn.Module, parameters: Sequence[torch.nn.Parameter] | None
    ) -> None:
        """Set the Adam ``optimizer`` and its learning-rate ``scheduler``."""
        config = self.config
        params = list(model.parameters()) if parameters is None else list(parameters)
        self.optimizer = torch.optim.Adam(
            params,
            lr=config.lr,
            betas=config.betas,
            weight_decay=config.weight_decay,
            foreach=True if config.adam == "foreach" else None,
            fused=True if config.adam == "fused" else None,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(config, s, self.steps_per_epoch)
        )

    def _unlabelled(self, unlabelled: Any):
        if unlabelled is None:
            if self.config.unlabelled_batch_size:
                raise ValueError("config.unlabelled_batch_size > 0 needs unlabelled= data")
            return None
        if not self.config.unlabelled_batch_size:
            raise ValueError("unlabelled= data needs config.unlabelled_batch_size > 0")
        sets = unlabelled if self.replicated else [unlabelled]
        if not isinstance(sets, list) or len(sets) != self.n_replicas:
            raise ValueError(f"unlabelled must hold one dataset per replica ({self.n_replicas})")
        parsed = [_as_tensors(u, f"unlabelled[{i}]") for i, u in enumerate(sets)]
        self.unlabelled_keys = parsed[0][0]
        out = [tensors for _keys, tensors in parsed]
        if self.keys is not None and self.unlabelled_keys is not None:
            shared = set(self.keys) & set(self.unlabelled_keys)
            if shared and set(self.unlabelled_keys) != set(self.keys):
                raise ValueError(
                    "unlabelled must have the keys of data (appended to its examples) or keys of "
                    f"its own (passed beside them); shares only {sorted(shared)}"
                )
            self.separate = not shared
            if not self.separate:  # same keys: reorder the tensors as data's
                order = [self.unlabelled_keys.index(k) for k in self.keys]
                out = [tuple(u[i] for i in order) for u in out]
        elif (self.keys is None) != (self.unlabelled_keys is None):
            raise ValueError("data and unlabelled must both be mappings, or both not")
        else:
            self.separate = False
        if self.separate:
            return out
        for i, (u, d) in enumerate(zip(out, self.data, strict=True)):
            if len(u) != len(d) or any(
                a.shape[1:] != b.shape[1:] for a, b in zip(u, d, strict=False)
            ):
                raise ValueError(
                    f"unlabelled[{i}] must hold tensors like data[{i}] (same count and shapes "
                    "after the first dimension)"
                )
        return out

    def _seeds(self, seeds: Sequence[int] | None) -> list[int]:
        if seeds is None:
            return [self.config.seed + r for r in range(self.n_replicas)]
        seeds = [int(s) for s in seeds]
        if len(seeds) != self.n_replicas:
            raise ValueError(f"seeds must hold one seed per replica ({self.n_replicas})")
        for i, s in enumerate(seeds):
            check_seed(f"seeds[{i}]", s, 2**62)
        return seeds

    # ------------------------------------------------------------------ training
    def _pack(self, tensors: tuple[torch.Tensor, ...]):
        """The batch as the loss sees it: a tuple, or a dict for mapping data."""
        if self.keys is None:
            return tensors
        keys = self.keys + (self.unlabelled_keys if self.unlabelled and self.separate else ())
        return dict(zip(keys, tensors, strict=True))

    def _batch(self, index: torch.Tensor):
        return self._pack(tuple(t[index].to(self.device) for t in self.data[0]))

    def _stream_batch(self):
        per_replica = []
        for r, streams in enumerate(self.streams):
            parts = [self.data[r]] + ([] if self.unlabelled is None else [self.unlabelled[r]])
            picked = []
            for stream, d in zip(streams, parts, strict=True):
                index = stream.next()  # one draw per stream: inputs and labels stay paired
                picked.append(tuple(t[index] for t in d))
            if self.unlabelled is not None and self.separate:
                per_replica.append(picked[0] + picked[1])  # the unlabelled tensors beside
            else:
                per_replica.append(
                    tuple(
                        torch.cat(ts) if len(ts) > 1 else ts[0] for ts in zip(*picked, strict=True)
                    )
                )
        if not self.replicated:
            return self._pack(tuple(t.to(self.device) for t in per_replica[0]))
        return self._pack(
            tuple(torch.stack(ts, dim=1).to(self.device) for ts in zip(*per_replica, strict=True))
        )

    def _step_seed(self) -> int:
        return (self.config.seed * _SEED_MIX + self.step) % (2**63 - 1)

    def _clip(self) -> None:
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        if self.replicated:
            from neurosim.replicas import clip_grad_norm_per_replica_

            clip_grad_norm_per_replica_(params, self.n_replicas, self.config.grad_clip)
        else:
            torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)

    def _train_step(self, batch: tuple[torch.Tensor, ...]) -> dict[str, Any]:
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
                self._clip()
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            if self.after_step is not None:
                with torch.no_grad():
                    self.after_step(self.model)
        record: dict[str, Any] = {}
        for key, value in terms.items():
            v = value.detach()
            record[key] = float(v) if v.ndim == 0 else v.cpu().double().tolist()
        record["lr"] = float(lr)
        return record

    def _evaluate(self) -> dict[str, float]:
        if self.eval_fn is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            metrics = self.eval_fn(self.model)
        self.model.train(was_training)
        return {f"eval_{key}": float(value) for key, value in metrics.items()}

    def _end_epoch(self, records: list[dict[str, Any]]) -> None:
        summary = {}
        for key in records[0] if records else ():
            summary[f"epoch_{key}"] = float(np.mean([r[key] for r in records]))
        summary.update(self._evaluate())
        self._epoch_records.append(summary)

    def fit(self, *, max_steps: int | None = None) -> xr.Dataset:
        """Train until the run is done (or ``max_steps`` total steps, to interrupt).

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
        flush = self.config.flush_denormals and self.device.type == "cpu"
        try:
            with flushing_denormals(flush):
                while self.step < stop:
                    if self.streams is not None:
                        record = self._train_step(self._stream_batch())
                        within = None
                    else:
                        if self._perm is None:
                            self._perm = torch.randperm(self.n_examples, generator=self.generator)
                        within = self.step - self.epoch * self.steps_per_epoch
                        lo = within * self.config.batch_size
                        index = self._perm[lo : lo + self.config.batch_size]
                        record = self._train_step(self._batch(index))
                    self._step_records.append(record)
                    self.step += 1
                    bar.update(1)
                    loss = record["loss"]
                    bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                    if within is not None and within + 1 == self.steps_per_epoch:
                        self._end_epoch(self._step_records[-self.steps_per_epoch :])
                        self.epoch += 1
                        self._perm = None
                    if self.streams is not None and self.step == self.total_steps:
                        summary = self._evaluate()
                        if summary:
                            self._epoch_records.append(summary)
                    every = self.config.checkpoint_every
                    if every and self.step % every == 0:
                        self.save_checkpoint(self.checkpoint_path)
        finally:
            bar.close()
        return self.history_dataset()

    # ------------------------------------------------------------------ history
    def history_dataset(self) -> xr.Dataset:
        """Metrics so far: per-step variables on dim ``step`` (1-based; ``(step, replica)`` for
        values given per replica), per-epoch ones on ``epoch``.

        Per-step: every ``loss_fn`` entry and ``lr``. Per-epoch: ``epoch_<key>`` (mean of the
        step values over the epoch; epochs only) and ``eval_<key>`` from ``eval_fn``.
        """
        data_vars: dict[str, Any] = {}
        for key in self._step_records[0] if self._step_records else ():
            first = self._step_records[0][key]
            if isinstance(first, list):
                values = np.array([r[key] for r in self._step_records], dtype=float)
                dims: tuple[str, ...] = ("step", "replica")
            else:
                values = np.array([r.get(key, np.nan) for r in self._step_records])
                dims = ("step",)
            data_vars[key] = (
                dims,
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
            "streams": None
            if self.streams is None
            else [[s.state() for s in streams] for streams in self.streams],
            "seeds": list(self.seeds),
            "step": self.step,
            "epoch": self.epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "n_examples": [d[0].shape[0] for d in self.data],
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
        """Restore a checkpoint written by a trainer with the same config and data sizes."""
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
        sizes = [d[0].shape[0] for d in self.data]
        if list(state["n_examples"]) != sizes or list(state["seeds"]) != list(self.seeds):
            raise ValueError(
                f"checkpoint {str(path)!r} was written for {state['n_examples']} examples and "
                f"seeds {state['seeds']}; this trainer has {sizes} and {self.seeds}"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"].cpu())
        self._perm = None if state["perm"] is None else state["perm"].cpu()
        if self.streams is not None:
            for streams, saved in zip(self.streams, state["streams"], strict=True):
                for s, st in zip(streams, saved, strict=True):
                    s.load(st)
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self._step_records = [dict(r) for r in state["step_records"]]
        self._epoch_records = [dict(r) for r in state["epoch_records"]]

    def resume(self, path: str | Path, *, max_steps: int | None = None) -> xr.Dataset:
        """Load the checkpoint at ``path`` and continue training; returns the history."""
        self.load_checkpoint(path)
        return self.fit(max_steps=max_steps)
