"""The ``robustode`` command: train, eval, leaderboard, list, demo.

Every error the user can cause prints one line, ``robustode <command>: error: ...``,
and exits non-zero; a traceback means a bug in robustode.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

from ..errors import RobustodeError
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default: sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad argument (already reported)
        return done.code if isinstance(done.code, int) else 2
    if args.command is None:
        parser.print_help()
        return 2
    prog = f"robustode {args.command}"
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in run records
    try:
        with _sigterm_as_interrupt():
            return args.run(args) or 0
    except RobustodeError as err:
        return _fail(prog, str(err))
    except BrokenPipeError:  # `robustode leaderboard | head` stopped reading: nothing is wrong, say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush would raise again
        return 0
    except OSError as err:  # an unwritable --out, a full disk: the user's to fix, not a bug
        return _fail(prog, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (Slurm, CI, `timeout`) as Terminated
        print(f"{prog}: interrupted{RESUME_HINTS.get(args.command, '')}", file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)


# What continues an interrupted command: the epochs done and the evaluation's finished batches are kept.
RESUME_HINTS = {"train": "; continue from the last completed epoch (or the final evaluation where it stopped): "
                         "the same command plus --resume",
                "eval": "; the same command continues the evaluation where it stopped"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it ends as Ctrl-C does (epochs and evaluation kept)."""


@contextmanager
def _sigterm_as_interrupt():
    def terminate(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread (an embedding program): SIGTERM stays its own
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _fail(prog: str, message: str) -> int:
    line = " ".join(part.strip() for part in message.splitlines() if part.strip()) or "failed"
    print(f"{prog}: error: {line}", file=sys.stderr)
    return 1
