"""Progress for long work, on a terminal and off one.

On a terminal a transient rich bar; elsewhere (CI, nohup, slurm, a pipe) a plain
line on stderr every ``every`` updates, with the rate and an ETA, so a log file
shows that the work moves and how long it has left. Quiet: nothing.

    with Progress(total=len(loader), description="epoch 1/36", every=50) as progress:
        for i, batch in enumerate(loader, 1):
            ...
            progress.update(i, "loss 2.1012")
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bar


def duration(seconds: float) -> str:
    """3.2 s, 4m05s, 2h13m: short, and still readable in a log file."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class Progress:
    """``update(done, stats)`` draws a bar (terminal) or prints a line every ``every`` updates (elsewhere)."""

    def __init__(self, total: int, description: str, *, console: Console | None = None, quiet: bool = False,
                 every: int = 1, unit: str = "batches"):
        self.console = console or Console(stderr=True)
        self.total, self.description, self.every, self.unit = total, description, max(1, every), unit
        self.quiet = quiet or self.console.quiet
        self.live = not self.quiet and self.console.is_terminal
        self._bar: Bar | None = None
        self._start = 0.0
        self._updates = 0

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        if self.live:
            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("{task.fields[stats]}"), console=self.console,
                            transient=True)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, stats="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    @property
    def wants_line(self) -> bool:
        """Whether the next update prints a plain line (callers skip costly stats otherwise)."""
        return not self.quiet and not self.live and (self._updates + 1) % self.every == 0

    def update(self, done: int, stats: str = "") -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=done, stats=stats)
            return
        self._updates += 1
        if self._updates % self.every == 0 and done < self.total:
            self.console.print(self.line(done, stats), markup=False, highlight=False, soft_wrap=True)

    def line(self, done: int, stats: str = "") -> str:
        elapsed = time.perf_counter() - self._start
        eta = elapsed / done * (self.total - done) if done else 0.0
        parts = [f"{self.description}: {done}/{self.total} {self.unit}", stats, f"{duration(elapsed)} elapsed",
                 f"eta {duration(eta)}"]
        return "  ".join(p for p in parts if p)
