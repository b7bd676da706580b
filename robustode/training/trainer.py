"""The state of one training run and the pieces of its epoch; everything a checkpoint captures.

The loop that strings the pieces together is ``run_epochs`` in loop.py:
train epoch (timed, with the defense's end of epoch) -> held-out evaluation (not
timed) -> checkpoint (not timed) -> log.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import torch

from ..dist import all_max, all_sum, broadcast_module, context
from ..utils import synchronize
from .averaging import weight_average
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .data_parallel import GradientSync, agree_on_stop
from .optim import param_groups, sgd_factory
from .result import Stop, TrainResult
from .run import RunInfo
from .schedules import lr_factor, make_scheduler, momentum_cycles


class Trainer:
    def __init__(self, model, defense, data, run: RunInfo, log, run_dir=None):
        from ..data import DeviceLoader

        s = self.settings = run.train
        self.run, self.defense, self.data = run, defense, data
        self.log, self.run_dir = log, run_dir
        self.device = torch.device(s.device)
        self.dist = context()
        fmt = torch.channels_last if s.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=fmt)
        broadcast_module(self.model)  # data-parallel ranks start from rank 0's weights
        # Train through the compiled wrapper; save, evaluate and hook into the original module.
        self.net = self.model
        if s.compile:
            self.net = torch.compile(self.model, mode=None if s.compile is True else s.compile)
        self.loader = DeviceLoader(data.train, s.batch_size, self.device, shuffle=True, augment=s.augment,
                                   seed=s.seed, drop_last=s.drop_last, channels_last=s.channels_last,
                                   rank=self.dist.rank, world_size=self.dist.world_size)
        groups = param_groups(self.model, s.weight_decay, s.no_wd_norms)
        make = sgd_factory(s.lr, s.momentum, s.nesterov, self.device)
        self.optimizers = list(defense.optimizers(self.model, groups, make))
        factor = lr_factor(s)
        self.schedulers = [make_scheduler(opt, factor, len(self.loader)) for opt in self.optimizers]
        self.schedulers += momentum_cycles(self.optimizers, s, factor, len(self.loader))
        self.average = weight_average(self.model, defense)  # the defense's ema_decay; evaluated and saved
        self.sync = GradientSync(self.model, self.optimizers, self.dist.world_size) if self.dist.enabled else None
        # Reading back mid-epoch costs a host sync: only when someone watches (bar or budget),
        # every log_every minibatches. Ranks read back together, so they must agree on it.
        self.watch = all_max(float(log.live or s.max_seconds is not None)) > 0
        self.after_step = getattr(self.model, "after_optimizer_step", None)
        self.epoch = 0  # data epochs completed
        self.steps = 0  # optimizer steps taken (Free-m: m per minibatch)
        self.seconds = 0.0  # training time so far
        self.history: list[dict] = []
        self.best: dict | None = None
        self.stop: Stop | None = None
        self.lr = self.optimizers[0].param_groups[0]["lr"]  # lr of the latest step, for the log

    @property
    def evaluated(self):
        """The model a run evaluates, saves and returns: the weight average when there is one."""
        return self.model if self.average is None else self.average.model

    # -- one data epoch -------------------------------------------------------------------------

    def train_epoch(self, e: int) -> tuple[dict, Stop | None]:
        """Data epoch ``e`` and the defense's end of epoch, timed; its metrics row and a stop, if any."""
        s, n = self.settings, len(self.loader)
        self.model.train()
        if callable(getattr(self.defense, "begin_epoch", None)):
            self.defense.begin_epoch(e)
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        count, stop = 0, None
        autocast = self._autocast()
        synchronize(self.device)
        start = time.perf_counter()
        with self.log.progress(n, f"epoch {e}/{s.data_epochs}") as update:
            for i, (x, y) in enumerate(self.loader, 1):
                if self.sync is not None:  # this rank's share of the global minibatch
                    self.sync.weight = len(y) / self.loader.global_batch_size(i - 1)
                with autocast:
                    out = self.defense.train_step(self.net, x, y, self.optimizers, self.on_step)
                loss_sum += out.loss.float() * out.count
                correct += out.correct
                count += out.count
                if self.watch and i % s.log_every == 0 and i < n:
                    loss, acc, _ = totals(loss_sum, correct, count)
                    elapsed = all_max(time.perf_counter() - start)
                    update(i, f"loss {loss:.4f} acc {acc:.1%} lr {self.lr:.4g} "
                              f"{i * s.batch_size / elapsed:.0f} img/s")
                    stop = self._check(loss, f"in data epoch {e} within its first {i} minibatches", elapsed)
                    if stop is not None:
                        break
        loss, acc, count = totals(loss_sum, correct, count)
        if stop is None and not math.isfinite(loss):
            stop = Stop("diverged", f"training loss became {loss} in data epoch {e}")
        if stop is None:
            guard = agree_on_stop(self.defense.end_epoch(self.model, self.optimizers, e), self.model,
                                  self.optimizers)
            stop = None if guard is None else Stop("guard", guard)
            if self.average is not None:  # a guard restored the previous epoch's weights: their average too
                if guard is None:
                    self.average.mark()
                else:
                    self.average.rewind()
        synchronize(self.device)
        seconds = all_max(time.perf_counter() - start)  # the slowest rank's time
        self.seconds += seconds
        images = count // s.replays  # Free-m counts each image once per replay
        row = {"epoch": e, "nominal_epoch": e * s.replays, "steps": self.steps, "lr": self.lr,
               "loss": loss, "train_acc": acc, "seconds": seconds, "images": images,
               "images_per_s": images / seconds, "note": None if stop is None else stop.reason}
        return row, stop

    def _check(self, loss: float, where: str, elapsed: float) -> Stop | None:
        if not math.isfinite(loss):
            return Stop("diverged", f"training loss became {loss} {where}")
        budget = self.settings.max_seconds
        if budget is not None and self.seconds + elapsed > budget:
            return Stop("budget", f"time budget of {budget:g} s spent {where}")
        return None

    def on_step(self) -> None:
        """Called by the defense after each optimizer step (all of its optimizers)."""
        self.lr = self.optimizers[0].param_groups[0]["lr"]
        for scheduler in self.schedulers:
            scheduler.step()
        self.steps += 1
        if self.after_step is not None:
            self.after_step()
        if self.average is not None:
            self.average.update()
        if self.settings.autocast_dtype is not None:
            # Autocast keeps the bf16 copies of the weights until its region ends, and the region spans
            # the whole train_step: a defense that steps several times per minibatch (Free-m) would run
            # its later replays on the copies of the weights from before the first step.
            torch.clear_autocast_cache()

    def _autocast(self):
        dtype = self.settings.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def due(self, every: int, e: int) -> bool:
        """Whether data epoch ``e`` is one of every ``every`` (the last epoch always is; 0: never)."""
        return bool(every) and (e % every == 0 or e == self.settings.data_epochs)

    def budget_spent(self, e: int) -> Stop | None:
        budget = self.settings.max_seconds
        if budget is not None and self.seconds > budget and e < self.settings.data_epochs:
            return Stop("budget", f"time budget of {budget:g} s spent after data epoch {e}")
        return None

    def stop_inside(self, row: dict, stop: Stop) -> None:
        """A stop inside an epoch. Divergence: keep last.pt and return its weights. Budget: write final.pt."""
        self.history.append(row)
        self.log.write_metrics(self.history)
        if stop.kind == "diverged":
            stop = Stop(stop.kind, f"{stop.reason}; {self._restore_last_good()}")
        self.stop = stop
        if stop.kind == "budget":
            self.save("final.pt", mid_epoch=True)

    def _restore_last_good(self) -> str:
        path = None if self.run_dir is None else self.run_dir / "checkpoints" / "last.pt"
        if path is None or not path.is_file():
            return "no checkpoint was written before, so the returned model holds the diverged weights"
        state = load_checkpoint(path)
        self.load_weights(state)
        return (f"kept the checkpoint of data epoch {state['epoch']} ({path}); "
                "the returned model holds its weights")

    # -- evaluation -------------------------------------------------------------------------------

    def evaluate_held_out(self) -> dict:
        """Held-out clean and robust accuracy (the evaluator seeds itself and restores the training RNG)."""
        from ..evaluation import evaluate_sharded

        s = self.settings
        held_out = self.data.test.subset(min(s.eval_n, len(self.data.test)))
        result = evaluate_sharded(self.evaluated, held_out, attacks=(s.eval_attack,),
                                  batch_size=s.eval_batch_size, device=self.device, quiet=True,
                                  masking_checks=False, seed=s.seed)
        return {"eval_clean": result.clean_acc, "eval_robust": result.robust[s.eval_attack]}

    def keep_best(self, row: dict) -> None:
        if not self.settings.keep_best or row.get("eval_robust") is None:
            return
        if self.best is None or row["eval_robust"] > self.best["eval_robust"]:
            self.best = {k: row[k] for k in ("epoch", "eval_robust", "eval_clean")}
            self.save("best.pt")

    def result(self) -> TrainResult:
        return TrainResult(model=self.evaluated, run=self.run, history=self.history,
                           train_seconds=self.seconds, data_epochs=self.epoch, stop=self.stop, best=self.best,
                           run_dir=None if self.run_dir is None else str(self.run_dir))

    # -- checkpoints ------------------------------------------------------------------------------

    def seed(self) -> None:
        seed = self.settings.seed
        torch.manual_seed(seed + self.dist.rank)  # data-parallel ranks draw independent random starts
        random.seed(seed)
        np.random.seed(seed)

    def state_dict(self, mid_epoch: bool = False) -> dict:
        return {
            "model": self.evaluated.state_dict(),
            "ema": None if self.average is None else self.average.state(),  # with the live weights
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "epoch": self.epoch, "steps": self.steps, "seconds": self.seconds, "lr": self.lr,
            "rng": rng_state(self.device),
            "loader": self.loader.state_dict(),
            "defense": self.defense.state_dict(),
            "config": self.run.to_dict(),
            "history": self.history, "best": self.best,
            "stop": None if self.stop is None else asdict(self.stop),
            "mid_epoch": mid_epoch,  # True only in final.pt of a run stopped inside an epoch
        }

    def load_weights(self, state: dict) -> None:
        """A checkpoint's weights: its model, or its average and the live weights kept beside it."""
        if self.average is None:
            self.model.load_state_dict(state["model"])
        else:
            self.average.load(state["model"], state["ema"])

    def load_state_dict(self, state: dict) -> None:
        self.load_weights(state)
        for opt, saved in zip(self.optimizers, state["optimizers"]):
            load_optimizer(opt, saved)
        for scheduler, saved in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(saved)
        self.epoch, self.steps = state["epoch"], state["steps"]
        self.seconds, self.lr = state["seconds"], state["lr"]
        self.history, self.best = list(state["history"]), state["best"]
        self.loader.load_state_dict(state["loader"])
        self.defense.load_state_dict(to_device(state["defense"], self.device))
        set_rng_state(state["rng"], self.device)

    def save(self, name: str, mid_epoch: bool = False) -> None:
        if self.run_dir is not None:
            save_checkpoint(self.run_dir / "checkpoints" / name, self.state_dict(mid_epoch))


def totals(loss_sum: torch.Tensor, correct: torch.Tensor, count: int) -> tuple[float, float, int]:
    """(mean loss, accuracy, count) over all ranks, read back in one host sync."""
    loss_sum, correct, count = all_sum(torch.stack([
        loss_sum.double(), correct.double(), torch.tensor(float(count), dtype=torch.float64, device=correct.device)
    ])).tolist()
    return loss_sum / max(count, 1), correct / max(count, 1), int(count)


def load_optimizer(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load an optimizer state, keeping this machine's kernel choice (CUDA's fused=True fails on CPU)."""
    kernels = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for group, keep in zip(opt.param_groups, kernels):
        group.update(keep)


def to_device(tree, device: torch.device):
    if isinstance(tree, torch.Tensor):
        return tree.to(device)
    if isinstance(tree, dict):
        return {k: to_device(v, device) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(to_device(v, device) for v in tree)
    return tree
