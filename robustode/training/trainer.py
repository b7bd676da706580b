"""The state of one training run and the pieces of its epoch (what a checkpoint captures and how a run is put
back from one: trainer_state.py).

The loop that strings the pieces together is ``run_epochs`` in loop.py: train epoch (timed, with the
defense's end of epoch) -> held-out evaluation (not timed) -> checkpoint (not timed) -> log.
"""

from __future__ import annotations

import math
from contextlib import nullcontext

import torch

from ..dist import all_max, broadcast_module, context
from ..errors import SolverError, first_line
from ..evaluation import evaluate_sharded
from ..models.solver import evaluations_text
from ..progress import duration
from .averaging import weight_average
from .checkpoint import load_checkpoint
from .cost import FlopCount, peak_memory, reset_peak_memory
from .data_parallel import GradientSync, agree_on_stop
from .held_out import HELD_OUT, held_out_attack
from .optim import param_groups, sgd_factory
from .result import Stop, TrainResult
from .run import RunInfo
from .schedules import lr_factor, make_scheduler, momentum_cycles
from .tally import Tally
from .trainer_state import TrainerState

LOSS_SCALE = 100.0  # warn when the training loss exceeds its initial value this many times
ESTIMATE_AFTER = 10  # minibatches of this process's first epoch behind the time estimate


class Trainer(TrainerState):
    def __init__(self, model, defense, data, run: RunInfo, log, loader, run_dir=None, held_out=None,
                 eval_attack=None):
        s = self.settings = run.train
        self.run, self.defense, self.data = run, defense, data
        self.held_out = data.test if held_out is None else held_out  # the periodic evaluations' points
        self.eval_attack = eval_attack or (held_out_attack(s) if s.eval_every else None)  # built at the entrance
        self.log, self.run_dir, self.device, self.dist = log, run_dir, torch.device(s.device), context()
        fmt = torch.channels_last if s.channels_last else torch.preserve_format
        self.model = model.to(self.device, memory_format=fmt)
        broadcast_module(self.model)  # data-parallel ranks start from rank 0's weights
        # Train through the compiled wrapper; save, evaluate and hook into the original module.
        self.net = self.model
        if s.compile:
            self.net = torch.compile(self.model, mode=None if s.compile is True else s.compile)
        self.loader = loader  # a DeviceLoader or a MixedLoader (training/feed.py): len, iter, state_dict
        groups = param_groups(self.model, s.weight_decay, s.no_wd_norms)
        make = sgd_factory(s.lr, s.momentum, s.nesterov, self.device)
        self.optimizers = list(defense.optimizers(self.model, groups, make))
        factor = lr_factor(s)
        self.schedulers = [make_scheduler(opt, factor, len(self.loader)) for opt in self.optimizers]
        self.schedulers += momentum_cycles(self.optimizers, s, factor, len(self.loader))
        # the defense's ema_decay, in the run's ema_style; evaluated and saved
        self.average = weight_average(self.model, defense, s.ema_style, len(self.loader) * s.data_epochs * s.replays)
        self.sync = GradientSync(self.model, self.optimizers, self.dist.world_size) if self.dist.enabled else None
        # Reading back mid-epoch costs a host sync: only when someone watches (bar or budget),
        # every log_every minibatches. Ranks read back together, so they must agree on it.
        self.watch = all_max(float(log.watching or s.max_seconds is not None)) > 0
        self.after_step = getattr(self.model, "after_optimizer_step", None)
        self.epoch = 0  # data epochs completed
        self.steps = 0  # optimizer steps taken (Free-m: m per minibatch)
        self.seconds = 0.0  # training time so far
        self.history: list[dict] = []
        self.best: dict | None = None
        self.stop: Stop | None = None
        self.lr = self.optimizers[0].param_groups[0]["lr"]  # lr of the latest step, for the log
        self.flops_per_image: float | None = None  # of one training step, counted before the first
        self.peak_memory_bytes: int | None = None  # CUDA peak allocated, over this and earlier sessions
        self.initial_loss: float | None = None  # the run's first minibatch loss
        self.scale_warned = False
        # The first minibatches of this process give a time estimate (once, when someone watches).
        self.estimate_at = min(ESTIMATE_AFTER, len(self.loader) - 1) if log.watching else None

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
        tally, stop, out = Tally(self.device, self.model), None, None  # the model's ODE solves are counted too
        autocast = self._autocast()
        with self.log.progress(n, f"epoch {e}/{s.data_epochs}") as progress:
            for i, (x, y) in enumerate(self.loader, 1):
                if self.sync is not None:  # this rank's share of the global minibatch
                    self.sync.weight = len(y) / self.loader.global_batch_size(i - 1)
                out, stop = self._train_step(x, y, autocast, f"in data epoch {e}, minibatch {i} of {n}")
                if stop is not None:
                    break
                tally.add(out)
                if self.initial_loss is None:  # one read-back per run: the scale the loss is watched against
                    self.initial_loss = all_max(float(out.loss))
                # Stats cost a host sync: every log_every, or when a line is due (ranks must agree: one process)
                due = i % s.log_every == 0 or i == self.estimate_at or (progress.wants_line and not self.dist.enabled)
                if self.watch and due and i < n:
                    stop = self._read_back(e, i, n, tally, progress)  # moves the progress line, with the stats
                    if stop is not None:
                        break
                else:
                    progress.update(i)
        loss, acc, count = tally.totals()
        stop = stop or self._end_epoch(e, loss)
        seconds = all_max(tally.elapsed())  # the slowest rank's time
        self.seconds += seconds
        images = count // s.replays  # Free-m counts each image once per replay
        row = {"epoch": e, "nominal_epoch": e * s.replays, "steps": self.steps, "lr": self.lr,
               "loss": loss, "train_acc": acc, "seconds": seconds, "images": images,
               "images_per_s": images / seconds, **({} if out is None else tally.evaluations()),
               "note": None if stop is None else stop.reason}
        return row, stop

    def _train_step(self, x, y, autocast, where: str):
        """(the defense's step's output, None); an ODE solve past its step budget: (None, a diverged Stop). The
        epoch's row then leaves out its f-evaluations: the failed solve's were counted, its minibatch not."""
        try:
            with autocast, self._counting(len(y)):
                return self.defense.train_step(self.net, x, y, self.optimizers, self.on_step), None
        except SolverError as err:
            if self.dist.enabled:  # the other ranks wait in a collective: the error ends the job (torchrun)
                raise
            return None, Stop("diverged", f"{first_line(err)}; {where}")

    def _read_back(self, e: int, i: int, n: int, tally: Tally, progress) -> Stop | None:
        """Mid-epoch: progress, the one-off time estimate, the loss-scale watch, divergence and budget."""
        s = self.settings
        loss, acc, _ = tally.totals()
        elapsed = all_max(tally.elapsed())
        evals = tally.evaluations()  # an ODE model's f-evaluations per minibatch so far, forward+backward
        cost = f" {evaluations_text(evals['evals_forward_per_batch'], evals['evals_backward_per_batch'])}" \
            if evals else ""
        progress.update(i, f"loss {loss:.4f} acc {acc:.1%} lr {self.lr:.4g} {i * s.batch_size / elapsed:.0f} img/s"
                        + cost)
        if i == self.estimate_at:
            self.estimate_at = None
            total = elapsed / i * (n * (s.data_epochs - e) + n - i) + elapsed
            self.log.info(f"estimated training time {duration(total)}: {s.data_epochs - e + 1} data epoch(s) "
                          f"of {n} minibatches at {i * s.batch_size / elapsed:.0f} img/s (from the first {i} "
                          "minibatches, warm-up included; the held-out and final evaluations come on top)")
        self._watch_scale(loss, e)
        return self._check(loss, f"in data epoch {e} within its first {i} minibatches", elapsed)

    def _end_epoch(self, e: int, loss: float) -> Stop | None:
        """After the epoch's last minibatch: divergence, the loss-scale watch, then the defense's end of epoch."""
        if not math.isfinite(loss):
            return Stop("diverged", f"training loss became {loss} in data epoch {e}")
        self._watch_scale(loss, e)
        guard = agree_on_stop(self.defense.end_epoch(self.model, self.optimizers, e), self.model, self.optimizers)
        restored = guard is not None and guard.restored_weights
        if self.average is not None:  # only a defense that put earlier weights back rewinds their average
            self.average.end_epoch(restored=restored)
        return None if guard is None else Stop("guard", guard.reason, restored)

    def _watch_scale(self, loss: float, e: int) -> None:
        """Warn once when the loss grows orders of magnitude past where it started (lr far too high?)."""
        initial = self.initial_loss
        if self.scale_warned or initial is None or not math.isfinite(loss) or loss <= LOSS_SCALE * max(initial, 1e-3):
            return
        self.scale_warned = True
        self.log.warn(f"the training loss {loss:.3g} in data epoch {e} is over {LOSS_SCALE:g}x its initial "
                      f"{initial:.3g}: the learning rate ({self.settings.lr:g}) is probably too high")

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
        s, held_out = self.settings, self.held_out.subset(min(self.settings.eval_n, len(self.held_out)))
        result = evaluate_sharded(self.evaluated, held_out, [self.eval_attack], HELD_OUT,
                                  batch_size=s.eval_batch_size, device=self.device, quiet=True,
                                  masking_checks=False, escalate=False, seed=s.seed)  # a curve, not the verdict
        return {"eval_clean": result.clean_acc, "eval_robust": result.robust[self.eval_attack.name]}

    def keep_best(self, row: dict) -> None:
        if not self.settings.keep_best or row.get("eval_robust") is None:
            return
        if self.best is None or row["eval_robust"] > self.best["eval_robust"]:
            self.best = {k: row[k] for k in ("epoch", "eval_robust", "eval_clean")}
            self.save("best.pt")

    def start_peak_memory(self) -> None:
        reset_peak_memory(self.device)

    def _counting(self, images: int):
        """The run's first training step runs under torch's FLOP counter (no extra step, no copy)."""
        if self.flops_per_image is not None or self.settings.compile:  # counted already, or compiled: no count
            return nullcontext()
        return FlopCount(self, images)

    def _peak(self) -> int | None:
        now = peak_memory(self.device)
        return max(filter(None, (now, self.peak_memory_bytes)), default=None)

    def result(self) -> TrainResult:
        return TrainResult(model=self.evaluated, run=self.run, history=self.history, train_seconds=self.seconds,
                           data_epochs=self.epoch, stop=self.stop, best=self.best,
                           run_dir=None if self.run_dir is None else str(self.run_dir),
                           peak_memory_bytes=self._peak(), flops_per_image=self.flops_per_image)
