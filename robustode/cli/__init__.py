"""The ``robustode`` command: train, eval, leaderboard, list, demo.

Every error the user can cause prints one line and exits non-zero; a
traceback means a bug in robustode.
"""

from __future__ import annotations

import sys

from ..errors import RobustodeError
from .parser import build_parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return args.run(args) or 0
    except RobustodeError as err:
        print(f"robustode {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"robustode {args.command}: interrupted (a run directory keeps its last checkpoint; "
              "continue with --resume)", file=sys.stderr)
        return 130


