"""The training loop every method plugs into (DESIGN.md §2).

A run of fraction f, E epochs, N training examples and batch size b takes exactly
⌈f·E·N/b⌉ optimizer steps, with the learning-rate schedule spanning them; an epoch is ⌈f·N/b⌉
steps for every method, and strategies reselect and the loop evaluates at epoch boundaries.
"""

from __future__ import annotations

import inspect
import math
import resource
import sys
import warnings
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from coreselect.data import Splits
from coreselect.devices import resolve_device
from coreselect.methods.base import EpochStrategy, StepStrategy, Strategy, TrainPlan
from coreselect.progress import ProgressBar
from coreselect.train.clock import PhaseTimer
from coreselect.train.context import TrainContext, _autocast, eval_batch_size
from coreselect.train.record import RunRecord, environment
from coreselect.train.schedule import SCHEDULES, lr_factor
from coreselect.train.stream import PlanStream, apply_transforms, step_batch

OPTIMIZERS = ("sgd", "adam", "adamw")
DEFAULT_LR = {"sgd": 0.1, "adam": 1e-3, "adamw": 1e-3}


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; ``record`` holds the run up to that point."""

    def __init__(self, message: str, record: RunRecord):
        super().__init__(message)
        self.record = record


def step_budget(examples_per_epoch: float, epochs: int, batch_size: int) -> tuple[int, int]:
    """``(total_steps, steps_per_epoch)`` = (⌈E·M/b⌉, ⌈M/b⌉) for M examples per epoch.

    M is f·N for every method (augmentation strategies add their copies). Products are
    rounded to 9 decimals first, so 0.1·5000·2 gives 1000 steps' worth, not 1000.0000000001.
    """
    total = math.ceil(round(examples_per_epoch * epochs, 9) / batch_size)
    per_epoch = math.ceil(round(examples_per_epoch, 9) / batch_size)
    return max(total, 1), max(per_epoch, 1)


class Trainer:
    """Train ``model`` on ``data`` with the subsets a ``strategy`` chooses.

    Args:
        model: an ``nn.Module`` mapping ``(B, C, H, W)`` to logits; models with ``embed`` and
            ``classifier`` (all of ``coreselect.models``) also give strategies embeddings.
        data: :class:`~coreselect.data.Splits` (train / validation / test tensors).
        strategy: an :class:`EpochStrategy` or :class:`StepStrategy` (see
            ``coreselect.methods``), e.g. ``build_strategy("random")``.
        epochs: E ≥ 1, the budget in epochs of the fraction.
        fraction: f in (0, 1]; the run takes ⌈f·E·N/b⌉ optimizer steps.
        batch_size: b.
        optimizer: "sgd" (Nesterov momentum 0.9), "adam", "adamw", or a callable
            ``params -> torch.optim.Optimizer``.
        lr: peak learning rate (default 0.1 for SGD, 1e-3 for Adam).
        schedule: "onecycle", "cosine" or "constant", spanning exactly the step budget.
        weight_decay: L2 penalty (default 5e-4).
        augment: transform applied to every main-set batch (``coreselect.transforms``).
        device: "auto", "cpu", "cuda"…; data are moved there once.
        seed: seeds the shuffles, the strategy's rng, the augmentations and torch.
        amp: "bf16" for bfloat16 autocast (GPU), None for float32.
        eval_test_subset: evaluate per epoch on this many seeded test examples (None: all);
            the final accuracy always uses the whole test set.
        eval_val_subset: likewise for validation; ``final_val_acc`` uses the whole set.
        quiet: no progress bar (it is also off when stdout is not a terminal).
        names: ``{"dataset", "model", "method"}`` for the record (defaults from the objects).
    """

    def __init__(
        self,
        model: nn.Module,
        data: Splits,
        strategy: Strategy,
        epochs: int,
        fraction: float,
        batch_size: int = 128,
        *,
        optimizer: str | Callable = "sgd",
        lr: float | None = None,
        schedule: str = "onecycle",
        weight_decay: float = 5e-4,
        augment: Callable | None = None,
        device: str | torch.device = "auto",
        seed: int = 0,
        amp: str | None = None,
        eval_test_subset: int | None = None,
        eval_val_subset: int | None = None,
        quiet: bool = False,
        names: dict | None = None,
    ):
        if not isinstance(strategy, EpochStrategy | StepStrategy):
            raise TypeError(
                f"strategy must be an EpochStrategy or StepStrategy, got {type(strategy).__name__}"
            )
        if isinstance(epochs, bool) or int(epochs) != epochs or epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}; valid names: {', '.join(SCHEDULES)}")
        if isinstance(optimizer, str) and optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; valid names: {', '.join(OPTIMIZERS)}"
            )
        if amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {amp!r}")
        if len(data.y_train) == 0:
            raise ValueError("the training set is empty")
        if strategy.fixed_fraction is not None and float(fraction) != strategy.fixed_fraction:
            warnings.warn(
                f"method {strategy.name!r} trains with fraction {strategy.fixed_fraction}; "
                f"ignoring fraction={fraction}",
                stacklevel=2,
            )
            fraction = strategy.fixed_fraction
        self.model = model
        self.data = data
        self.strategy = strategy
        self.epochs = int(epochs)
        self.fraction = float(fraction)
        self.batch_size = int(batch_size)
        self.optimizer = optimizer
        opt_name = optimizer if isinstance(optimizer, str) else "custom"
        self.lr = float(lr) if lr is not None else DEFAULT_LR.get(opt_name, 0.1)
        self.schedule = schedule
        self.weight_decay = float(weight_decay)
        self.augment = augment
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        self.eval_test_subset = eval_test_subset
        self.eval_val_subset = eval_val_subset
        self.quiet = quiet
        self.names = names or {}
        n = len(data.y_train)
        self.total_steps, self.steps_per_epoch = step_budget(
            strategy.examples_per_epoch(n, self.fraction), self.epochs, self.batch_size
        )
        self.num_epochs = math.ceil(self.total_steps / self.steps_per_epoch)

    # ------------------------------------------------------------------ public
    def fit(self) -> RunRecord:
        """Train for the step budget; returns the :class:`RunRecord`.

        Raises :class:`NonFiniteLossError` (carrying the record so far) when the loss turns
        NaN or infinite.
        """
        torch.manual_seed(self.seed)
        dev = self.device
        data = self.data
        model = self.model.to(dev)
        model.train()
        x_train, y_train = data.x_train.to(dev), data.y_train.to(dev)
        n = int(y_train.numel())
        ctx = TrainContext(
            model=model,
            x=x_train,
            y=y_train,
            pool=np.arange(n, dtype=np.int64),
            num_classes=data.num_classes,
            device=dev,
            rng=np.random.default_rng([self.seed, 1]),
            fraction=self.fraction,
            batch_size=self.batch_size,
            budget=math.ceil(round(self.fraction * n, 9)),
            steps_per_epoch=self.steps_per_epoch,
            total_steps=self.total_steps,
            autocast_dtype=self.amp_dtype,
        )
        opt = self._build_optimizer(model)
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda t: lr_factor(self.schedule, min(t, self.total_steps - 1), self.total_steps)
        )
        gen = torch.Generator(device=dev).manual_seed(self.seed)
        stream = PlanStream(self.batch_size, np.random.default_rng([self.seed, 2]))
        test_idx = self._subset(len(data.y_test), self.eval_test_subset, salt=3)
        val_idx = self._subset(len(data.y_val), self.eval_val_subset, salt=4)
        record = self._new_record(n)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)

        strategy = self.strategy
        timer = PhaseTimer(dev)
        timer.start()
        with timer.phase("select"):
            strategy.setup(ctx)
        plan: TrainPlan | None = None
        progress = ProgressBar(
            self.total_steps, "training", disable=self.quiet or not sys.stdout.isatty()
        )
        step = 0
        with progress:
            for epoch in range(self.num_epochs):
                ctx.epoch = epoch
                steps = min(self.steps_per_epoch, self.total_steps - step)
                if isinstance(strategy, EpochStrategy) and (plan is None or strategy.due(epoch)):
                    with timer.phase("select"):
                        plan = strategy.plan(ctx)
                    if not isinstance(plan, TrainPlan):
                        raise TypeError(f"{strategy.name}.plan() must return a TrainPlan")
                    stream.set_plan(plan)
                losses, seen = [], []
                for _ in range(steps):
                    ctx.step = step
                    if isinstance(strategy, StepStrategy):
                        with timer.phase("select"):
                            idx, w, src = step_batch(strategy, ctx)
                    else:
                        idx, w, src = stream.next()
                    batch_loss, per_example = self._train_step(
                        model, opt, ctx, idx, w, src, plan, gen, timer
                    )
                    if step < self.total_steps - 1:
                        sched.step()
                    step += 1
                    ctx.step = step
                    if isinstance(strategy, StepStrategy):
                        with timer.phase("select"):
                            strategy.after_step(ctx, idx, per_example)
                    losses.append(batch_loss)
                    seen.append(idx)
                    progress.advance()
                epoch_losses = torch.stack(losses) if losses else torch.zeros(0)
                timer.mark()  # the epoch's training steps end here
                bad = ~torch.isfinite(epoch_losses)
                entry = {
                    "epoch": epoch + 1,
                    "step": step,
                    "wall_s": timer.total("train") + timer.total("select"),
                    "select_s": timer.total("select"),
                    "train_loss": float(epoch_losses[~bad].mean()) if (~bad).any() else None,
                    "n_train": int(np.unique(np.concatenate(seen)).size) if seen else 0,
                    "lr": opt.param_groups[0]["lr"],
                }
                if bad.any():
                    first = step - steps + int(torch.nonzero(bad)[0]) + 1
                    entry.update(val_acc=None, test_acc=None, test_loss=None)
                    record.epochs.append(entry)
                    msg = f"non-finite loss at epoch {epoch + 1}, step {first}: training stopped"
                    self._finish(record, timer, status=msg, final_acc=None)
                    raise NonFiniteLossError(msg, record)
                with timer.phase("eval"):
                    val_acc = self._accuracy(model, data.x_val[val_idx], data.y_val[val_idx])[0]
                    test_acc, test_loss = self._accuracy(
                        model, data.x_test[test_idx], data.y_test[test_idx]
                    )
                entry.update(val_acc=val_acc, test_acc=test_acc, test_loss=test_loss)
                record.epochs.append(entry)
                progress.describe(
                    f"epoch {epoch + 1}/{self.num_epochs} loss {entry['train_loss']:.3f} "
                    f"val {_pct(val_acc)}"
                )
        with timer.phase("eval"):
            final = record.epochs[-1]["test_acc"]
            if test_idx.size < len(data.y_test):
                final = self._accuracy(model, data.x_test, data.y_test)[0]
            record.final_val_acc = record.epochs[-1]["val_acc"]
            if val_idx.size < len(data.y_val):
                record.final_val_acc = self._accuracy(model, data.x_val, data.y_val)[0]
        self._finish(record, timer, status="completed", final_acc=final)
        return record

    # ----------------------------------------------------------------- helpers
    def _train_step(self, model, opt, ctx, idx, w, src, plan, gen, timer):
        """One optimizer step on dataset ``idx`` with weights ``w``.

        Returns the weighted batch loss (0-d) and the per-example losses ``(b,)``, detached."""
        dev = self.device
        idx_t = torch.from_numpy(idx).to(dev, non_blocking=True)
        x, y = ctx.x[idx_t], ctx.y[idx_t]
        x = apply_transforms(x, src, plan, self.augment, gen)
        w_t = torch.from_numpy(w).to(dev, non_blocking=True)
        track = self.strategy.needs_displacement
        if track:
            with timer.phase("select"):
                before = [p.detach().clone() for p in model.parameters()]
        with _autocast(dev, self.amp_dtype):
            out = model(x)
        per_example = F.cross_entropy(out.float(), y, reduction="none")
        loss = (w_t * per_example).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if track:
            with timer.phase("select"):
                ctx.displacement = [
                    p.detach() - b for p, b in zip(model.parameters(), before, strict=True)
                ]
        return loss.detach(), per_example.detach()

    def _build_optimizer(self, model):
        params = model.parameters()
        if callable(self.optimizer):
            return self.optimizer(params)
        if self.optimizer == "sgd":
            return torch.optim.SGD(
                params, lr=self.lr, momentum=0.9, nesterov=True, weight_decay=self.weight_decay
            )
        if self.optimizer == "adam":
            return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.AdamW(params, lr=self.lr, weight_decay=self.weight_decay)

    def _subset(self, n: int, size: int | None, salt: int) -> np.ndarray:
        """Seeded, sorted positions of a fixed evaluation subset (all ``n`` when size is None)."""
        if size is None or size >= n:
            return np.arange(n)
        return np.sort(np.random.default_rng([self.seed, salt]).choice(n, size=size, replace=False))

    @torch.no_grad()
    def _accuracy(self, model, x, y) -> tuple[float | None, float | None]:
        """Eval-mode accuracy and mean cross-entropy on ``x`` ``(M, C, H, W)``, ``y`` ``(M,)``."""
        if len(y) == 0:
            return None, None
        was_training = model.training
        model.eval()
        correct, loss = 0, 0.0
        batch = eval_batch_size(self.device)
        for s in range(0, len(y), batch):
            xb, yb = x[s : s + batch].to(self.device), y[s : s + batch].to(self.device)
            with _autocast(self.device, self.amp_dtype):
                out = model(xb)
            out = out.float()
            correct += int((out.argmax(1) == yb).sum())
            loss += float(F.cross_entropy(out, yb, reduction="sum"))
        model.train(was_training)
        return correct / len(y), loss / len(y)

    def _new_record(self, n: int) -> RunRecord:
        names = self.names
        return RunRecord(
            dataset=names.get("dataset", self.data.name),
            model=names.get("model", type(self.model).__name__.lower()),
            method=names.get("method", self.strategy.name),
            fraction=self.fraction,
            seed=self.seed,
            config={
                "epochs": self.epochs,
                "batch_size": self.batch_size,
                "optimizer": self.optimizer if isinstance(self.optimizer, str) else "custom",
                "lr": self.lr,
                "schedule": self.schedule,
                "weight_decay": self.weight_decay,
                "augment": repr(self.augment) if self.augment is not None else None,
                "amp": "bf16" if self.amp_dtype is not None else None,
                "n_train": n,
                "n_val": len(self.data.y_val),
                "n_test": len(self.data.y_test),
                "eval_test_subset": self.eval_test_subset,
                "eval_val_subset": self.eval_val_subset,
                "total_steps": self.total_steps,
                "steps_per_epoch": self.steps_per_epoch,
                "strategy": _strategy_options(self.strategy),
                **names.get("config", {}),
            },
            env=environment(self.device),
        )

    def _finish(self, record: RunRecord, timer: PhaseTimer, *, status: str, final_acc) -> None:
        record.final_test_acc = final_acc
        record.total_select_s = timer.total("select")
        record.total_wall_s = timer.total("train") + record.total_select_s
        record.total_eval_s = timer.total("eval")
        record.strategy_stats = dict(self.strategy.stats())
        record.peak_mem_mb = _peak_mem_mb(self.device)
        record.status = status


def _strategy_options(strategy: Strategy) -> dict:
    """The strategy's constructor options, read back from its attributes of the same name."""
    params = inspect.signature(type(strategy).__init__).parameters
    out = {}
    for key in params:
        value = getattr(strategy, key, None)
        if key != "self" and isinstance(value, int | float | str | bool | type(None)):
            out[key] = value
    return out


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"
