"""The ``robustode`` command: train, eval, leaderboard, list, demo.

Every error the user can cause prints one line, ``robustode <command>: error: ...``,
and exits non-zero; a traceback means a bug in robustode.
"""

from __future__ import annotations

import os
import sys

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
        return args.run(args) or 0
    except RobustodeError as err:
        return _fail(prog, str(err))
    except BrokenPipeError:  # `robustode leaderboard | head` stopped reading: nothing is wrong, say nothing
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's exit flush would raise again
        return 0
    except OSError as err:  # an unwritable --out, a full disk: the user's to fix, not a bug
        return _fail(prog, f"{err.strerror or err}" + (f": {err.filename}" if err.filename else ""))
    except KeyboardInterrupt:
        hint = "; continue from the last completed epoch: the same command plus --resume" \
            if args.command == "train" else ""
        print(f"{prog}: interrupted{hint}", file=sys.stderr)
        return 130


def _fail(prog: str, message: str) -> int:
    line = " ".join(part.strip() for part in message.splitlines() if part.strip()) or "failed"
    print(f"{prog}: error: {line}", file=sys.stderr)
    return 1
