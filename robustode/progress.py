"""Progress for long work, on a terminal and off one, with an ETA from the measured rate.

On a terminal a transient rich bar that redraws itself several times a second; elsewhere (CI, nohup,
slurm, a pipe) a plain line on stderr at least every ``interval`` seconds (30 by default, or
$ROBUSTODE_PROGRESS_SECONDS), with the rate and an ETA, so a log file shows that the work moves and
how long it has left. Quiet: nothing. ``update(done)`` is cheap: call it after every step, and pass
stats only when you have them (they are kept until the next ones).

    with Progress(total=len(loader), description="epoch 1/36") as progress:
        for i, batch in enumerate(loader, 1):
            ...
            progress.update(i, "loss 2.1012" if progress.wants_line else None)
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar

INTERVAL = 30.0  # seconds between plain progress lines off a terminal
LIVE_STATS = 2.0  # seconds between fresh stats on a live bar
WINDOW = 20.0  # seconds of recent work the rate is measured over


def duration(seconds: float) -> str:
    """3.2 s, 4m05s, 2h13m: short, and still readable in a log file."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


_REPORT: ContextVar[Callable[[str], None] | None] = ContextVar("robustode_report", default=None)


@contextmanager
def reporting(to: Callable[[str], None]) -> Iterator[None]:
    """Within the block, ``report(text)`` goes to ``to`` (a progress bar's stats): work made of parts, such as
    AutoAttack's components, says which part runs without a progress object in its signature."""
    token = _REPORT.set(to)
    try:
        yield
    finally:
        _REPORT.reset(token)


def report(text: str) -> None:
    """Say what runs now, to the progress around it (nothing outside ``reporting``)."""
    to = _REPORT.get()
    if to is not None:
        to(text)


def line_interval() -> float:
    """Seconds between plain progress lines: $ROBUSTODE_PROGRESS_SECONDS, else 30."""
    text = os.environ.get("ROBUSTODE_PROGRESS_SECONDS", "")
    try:
        seconds = float(text) if text else INTERVAL
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:  # a typo is said, never silently taken for the default
        logging.getLogger("robustode").warning("$ROBUSTODE_PROGRESS_SECONDS=%r is no number of seconds >= 0; "
                                               "progress lines every %g s", text, INTERVAL)
        return INTERVAL
    return seconds


class Eta:
    """Time left, from the rate over the last ``window`` seconds of work: a slow start (compilation,
    warm-up) is forgotten once enough later work is measured, and a change of pace shows within a window."""

    def __init__(self, total: int, clock: Callable[[], float] = time.perf_counter, window: float = WINDOW):
        self.total, self.clock, self.window = total, clock, window
        self.start = clock()
        self.samples: deque[tuple[float, int]] = deque([(self.start, 0)])

    def add(self, done: int) -> None:
        now = self.clock()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()  # keep one sample at least a window old: the rate spans the window

    def seconds_left(self) -> float | None:
        """None until some work is measured."""
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        if d1 <= d0 or t1 <= t0:
            return None
        return (self.total - d1) * (t1 - t0) / (d1 - d0)

    def elapsed(self) -> float:
        return self.clock() - self.start


class Progress:
    """``update(done, stats)`` moves a bar (terminal) or prints a line every ``interval`` seconds (elsewhere)."""

    def __init__(self, total: int, description: str, *, console: Console | None = None, quiet: bool = False,
                 unit: str = "batches", interval: float | None = None, clock: Callable[[], float] = time.perf_counter):
        self.console = console or Console(stderr=True)
        self.total, self.description, self.unit = total, description, unit
        self.interval = line_interval() if interval is None else interval
        self.quiet = quiet or self.console.quiet
        self.live = not self.quiet and self.console.is_terminal
        self.clock = clock
        self.stats = ""
        self._bar: Bar | None = None
        self._eta: Eta | None = None
        self._last_line = 0.0
        self._last_done = -1  # the count of the last line printed: one line per count at most

    def __enter__(self) -> Progress:
        self._eta = Eta(self.total, self.clock)
        self._last_line = self._eta.start
        if self.live:
            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[eta]}"), TextColumn("{task.fields[stats]}"),
                            console=self.console, transient=True, refresh_per_second=4)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, stats="", eta="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    @property
    def wants_line(self) -> bool:
        """Whether the next update shows fresh stats (a line is due off a terminal, or a live bar's stats are
        LIVE_STATS seconds old): callers skip costly stats (a host sync) otherwise."""
        if self.quiet:
            return False
        return self.clock() - self._last_line >= (LIVE_STATS if self.live else self.interval)

    def update(self, done: int, stats: str | None = None) -> None:
        if self.quiet:
            return
        self._eta.add(done)
        if stats is not None:
            self.stats = stats
        if self._bar is not None:
            if stats is not None:
                self._last_line = self.clock()
            self._bar.update(self._task, completed=done, stats=self.stats, eta=self._eta_text())
            return
        fresh = stats is not None or done != self._last_done  # a count already shown is not shown again alone
        if self.clock() - self._last_line >= self.interval and done < self.total and fresh:
            self._last_line, self._last_done = self.clock(), done
            self.console.print(self.line(done), markup=False, highlight=False, soft_wrap=True)

    def _eta_text(self) -> str:
        left = self._eta.seconds_left()
        return "" if left is None else f"eta {duration(left)}"

    def line(self, done: int) -> str:
        parts = [f"{self.description}: {done}/{self.total} {self.unit}", self.stats,
                 f"{duration(self._eta.elapsed())} elapsed", self._eta_text()]
        return "  ".join(p for p in parts if p)
