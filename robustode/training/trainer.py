"""The state of one training run and its epoch: everything a checkpoint captures.

Per data epoch: train (timed) -> defense.end_epoch (timed: it is part of the
defense) -> held-out evaluation (not timed) -> checkpoint (not timed) -> log.
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext

import numpy as np
import torch

from ..utils import synchronize
from .checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import autocast_dtype
from .distributed import GradientSync, agree_on_stop, all_max, all_sum, broadcast_module, context
from .optim import param_groups, sgd_factory
from .schedules import lr_factor, make_scheduler


class Trainer:
    def __init__(self, model, defense, data, run_config: dict, log, run_dir=None):
        from ..data import DeviceLoader

        c = self.c = run_config["train"]
        self.run_config, self.defense, self.data = run_config, defense, data
        self.log, self.run_dir = log, run_dir
        self.device = torch.device(c["device"])
        self.dist = context()
        fmt = torch.channels_last if c["channels_last"] else torch.preserve_format
        self.model = model.to(self.device, memory_format=fmt)
        broadcast_module(self.model)  # data-parallel ranks start from rank 0's weights
        # Train through the compiled wrapper; save, evaluate and hook into the original module.
        self.net = self.model
        if c["compile"]:
            self.net = torch.compile(self.model, mode=None if c["compile"] is True else c["compile"])
        self.loader = DeviceLoader(data.train, c["batch_size"], self.device, shuffle=True,
                                   augment=c["augment"], seed=c["seed"], drop_last=c["drop_last"],
                                   channels_last=c["channels_last"], rank=self.dist.rank,
                                   world_size=self.dist.world_size)
        groups = param_groups(self.model, c["weight_decay"], c["no_wd_norms"])
        make = sgd_factory(c["lr"], c["momentum"], c["nesterov"], self.device)
        self.optimizers = list(defense.optimizers(self.model, groups, make))
        factor = lr_factor(c)
        self.schedulers = [make_scheduler(opt, factor, len(self.loader)) for opt in self.optimizers]
        self.sync = GradientSync(self.model, self.optimizers, self.dist.world_size) if self.dist.enabled else None
        # Reading back mid-epoch costs a host sync: only when someone watches (bar or budget),
        # every log_every minibatches. Ranks read back together, so they must agree on it.
        self.watch = all_max(float(log.live or c["max_seconds"] is not None)) > 0
        self.autocast_dtype = autocast_dtype(c)
        self.after_step = getattr(self.model, "after_optimizer_step", None)
        self.epoch = 0  # data epochs completed
        self.steps = 0  # optimizer steps taken (Free-m: m per minibatch)
        self.seconds = 0.0  # training time so far
        self.history: list[dict] = []
        self.best: dict | None = None
        self.stopped: str | None = None
        self.lr = self.optimizers[0].param_groups[0]["lr"]  # lr of the latest step, for the log

    # -- one data epoch -------------------------------------------------------------------------

    def run_epoch(self) -> None:
        c, e = self.c, self.epoch + 1
        row, stop = self._train(e)
        if stop is not None:
            self._stop(row, *stop)
            return
        self.epoch = e
        if c["eval_every"] and (e % c["eval_every"] == 0 or e == c["data_epochs"]):
            row.update(self._evaluate())
        self.history.append(row)
        if row.get("note"):  # the defense's guard stopped the run and restored earlier weights itself
            self.stopped = row["note"]
        elif e % c["checkpoint_every"] == 0 or e == c["data_epochs"]:
            self.save("last.pt")
            self._keep_best(row)
        self.log.write_metrics(self.history)
        self.log.info(epoch_line(row, c))
        if not self.stopped and c["max_seconds"] is not None and self.seconds > c["max_seconds"] \
                and e < c["data_epochs"]:
            self.stopped = f"time budget of {c['max_seconds']:g} s spent after data epoch {e}"
        if self.stopped:
            self.log.info(f"stopped: {self.stopped}")

    def _train(self, e: int) -> tuple[dict, tuple[str, str] | None]:
        """One data epoch; returns its metrics and, when it had to stop, (kind, reason)."""
        c, n = self.c, len(self.loader)
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), dtype=torch.long, device=self.device)
        count, stop, guard = 0, None, None
        autocast = self._autocast()
        synchronize(self.device)
        start = time.perf_counter()
        with self.log.progress(n, f"epoch {e}/{c['data_epochs']}") as update:
            for i, (x, y) in enumerate(self.loader, 1):
                if self.sync is not None:  # this rank's share of the global minibatch
                    self.sync.weight = len(y) / self.loader.global_batch_size(i - 1)
                with autocast:
                    out = self.defense.train_step(self.net, x, y, self.optimizers, self.on_step)
                loss_sum += out.loss.float() * out.count
                correct += out.correct
                count += out.count
                if self.watch and i % c["log_every"] == 0 and i < n:
                    loss, acc, _ = totals(loss_sum, correct, count)
                    elapsed = all_max(time.perf_counter() - start)
                    update(i, f"loss {loss:.4f} acc {acc:.1%} lr {self.lr:.4g} "
                              f"{i * c['batch_size'] / elapsed:.0f} img/s")
                    stop = self._check(loss, f"in data epoch {e} within its first {i} minibatches", elapsed)
                    if stop is not None:
                        break
        loss, acc, count = totals(loss_sum, correct, count)
        if stop is None and not math.isfinite(loss):
            stop = ("diverged", f"training loss became {loss} in data epoch {e}")
        if stop is None:
            guard = agree_on_stop(self.defense.end_epoch(self.model, self.optimizers, e), self.model,
                                  self.optimizers)
        synchronize(self.device)
        seconds = all_max(time.perf_counter() - start)  # the slowest rank's time
        self.seconds += seconds
        images = count // c["replays"]  # Free-m counts each image once per replay
        row = {"epoch": e, "nominal_epoch": e * c["replays"], "steps": self.steps, "lr": self.lr,
               "loss": loss, "train_acc": acc, "seconds": seconds,
               "images": images, "images_per_s": images / seconds, "note": guard}
        return row, stop

    def _check(self, loss: float, where: str, elapsed: float) -> tuple[str, str] | None:
        if not math.isfinite(loss):
            return "diverged", f"training loss became {loss} {where}"
        budget = self.c["max_seconds"]
        if budget is not None and self.seconds + elapsed > budget:
            return "budget", f"time budget of {budget:g} s spent {where}"
        return None

    def on_step(self) -> None:
        """Called by the defense after each optimizer step (all of its optimizers)."""
        self.lr = self.optimizers[0].param_groups[0]["lr"]
        for scheduler in self.schedulers:
            scheduler.step()
        self.steps += 1
        if self.after_step is not None:
            self.after_step()
        if self.autocast_dtype is not None:
            # Autocast keeps the bf16 copies of the weights until its region ends, and the region spans
            # the whole train_step: a defense that steps several times per minibatch (Free-m) would run
            # its later replays on the copies of the weights from before the first step.
            torch.clear_autocast_cache()

    def _autocast(self):
        dtype = self.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype) if dtype is not None else nullcontext()

    def _stop(self, row: dict, kind: str, reason: str) -> None:
        """Stop inside an epoch. Divergence: keep last.pt, restore its weights. Budget: write final.pt."""
        row["note"] = reason
        self.history.append(row)
        self.log.write_metrics(self.history)
        if kind == "diverged":
            reason += "; " + self._restore_last_good()
        else:
            self.save("final.pt", mid_epoch=True)
        self.stopped = reason
        self.log.info(f"stopped: {reason}")

    def _restore_last_good(self) -> str:
        path = None if self.run_dir is None else self.run_dir / "checkpoints" / "last.pt"
        if path is None or not path.is_file():
            return "no checkpoint was written before, so the returned model holds the diverged weights"
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        return (f"kept the checkpoint of data epoch {state['epoch']} ({path}); "
                "the returned model holds its weights")

    # -- evaluation -------------------------------------------------------------------------------

    def _evaluate(self) -> dict:
        """Held-out clean and robust accuracy (the evaluator seeds itself and restores the training RNG)."""
        from .distributed import evaluate

        c = self.c
        held_out = self.data.test.subset(min(c["eval_n"], len(self.data.test)))
        result = evaluate(self.model, held_out, attacks=(c["eval_attack"],), batch_size=c["eval_batch_size"],
                          device=self.device, quiet=True, masking_checks=False, seed=c["seed"])
        return {"eval_clean": result.clean_acc, "eval_robust": result.robust[c["eval_attack"]]}

    def _keep_best(self, row: dict) -> None:
        if not self.c["keep_best"] or row.get("eval_robust") is None:
            return
        if self.best is None or row["eval_robust"] > self.best["eval_robust"]:
            self.best = {k: row[k] for k in ("epoch", "eval_robust", "eval_clean")}
            self.save("best.pt")

    # -- checkpoints ------------------------------------------------------------------------------

    def seed(self) -> None:
        seed = self.c["seed"]
        torch.manual_seed(seed + self.dist.rank)  # data-parallel ranks draw independent random starts
        random.seed(seed)
        np.random.seed(seed)

    def state_dict(self, mid_epoch: bool = False) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizers": [opt.state_dict() for opt in self.optimizers],
            "schedulers": [s.state_dict() for s in self.schedulers],
            "epoch": self.epoch, "steps": self.steps, "seconds": self.seconds, "lr": self.lr,
            "rng": rng_state(self.device),
            "loader": self.loader.state_dict(),
            "defense": self.defense.state_dict(),
            "config": self.run_config,
            "history": self.history, "best": self.best,
            "mid_epoch": mid_epoch,  # True only in final.pt of a run stopped inside an epoch
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
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


def epoch_line(row: dict, c: dict) -> str:
    line = (f"epoch {row['epoch']}/{c['data_epochs']}  loss {row['loss']:.4f}  acc {row['train_acc']:.2%}  "
            f"lr {row['lr']:.4g}  {row['seconds']:.1f} s  {row['images_per_s']:.0f} img/s")
    if row.get("eval_robust") is not None:
        line += f"  held-out clean {row['eval_clean']:.2%}  {c['eval_attack']} {row['eval_robust']:.2%}"
    return line
