"""`robustode probe CHECKPOINT`: the ODE probe of a trained model (robustode.probing)."""

from __future__ import annotations

import dataclasses
import json

from ..errors import ConfigError
from ..specs import parse_spec
from ..threat import DEFAULT_EPS
from .parser import _checked, _command, _data_options, positive_int
from .types import budget


@_checked
def setting(text: str) -> dict:
    """"method=rk4,step_size=0.1" -> {"method": "rk4", "step_size": 0.1} (the spec grammar's values)."""
    _, values = parse_spec(f"setting({text})", "probe setting")
    if not values:
        raise ConfigError(f"expected KEY=VALUE[,KEY=VALUE...] such as method=rk4,step_size=0.1, got {text!r}")
    return values


def probe_parser(sub) -> None:
    p = _command(sub, "probe", "sweep a model's solver or step size at test time; Lipschitz along depth",
                 "Evaluate a checkpoint's model under other test-time discretizations: a model with ODE\n"
                 "blocks under other solvers (method, step size, rtol/atol, T), a small-step ResNet under\n"
                 "other step sizes h and Heun steps (scheme=heun), an LM-ResNet as forward Euler (k = 0),\n"
                 "an RK2 ResNet's blocks as Euler steps (scheme=euler); clean and PGD-20 accuracy with\n"
                 "95% intervals, f-evaluations per forward and seconds for each. Then per-block Lipschitz\n"
                 "estimates of the residual functions along depth (Lanczos iteration at 16 test points).\n"
                 "A setting the model does not have is an error before any work.\n\n"
                 "  robustode probe runs/x/checkpoints/last.pt --n 200\n"
                 "  robustode probe runs/x/checkpoints/last.pt --setting method=dopri5,rtol=1e-4,atol=1e-4\n"
                 "  robustode probe runs/x/checkpoints/last.pt --record runs/x/record.json")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint of robustode train")
    _data_options(p, None, "the run's own")
    p.add_argument("--n", type=positive_int, default=100, metavar="N", help="test images per setting (default 100)")
    p.add_argument("--batch-size", type=positive_int, default=100, metavar="B", help="evaluation batch (default 100)")
    p.add_argument("--eps", type=budget, default=DEFAULT_EPS, metavar="EPS", help="PGD-20's budget (default 8/255)")
    p.add_argument("--setting", type=setting, action="append", metavar="KEY=VALUE,...",
                   help="a setting to sweep besides the model's own (repeatable; default: the standard sweep)")
    p.add_argument("--no-lipschitz", action="store_true", help="skip the Lipschitz estimates")
    p.add_argument("--record", metavar="RECORD", help="add the probe to this record (evaluation.ode.probe)")
    p.add_argument("--out", metavar="FILE", help="also write the probe as JSON")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.set_defaults(run=cmd_probe)


def cmd_probe(args) -> int:
    from ..files import check_output_file, write_atomic
    from ..probe_api import probe_checkpoint
    from ..probing import probe_table
    from ..records import OdeInfo, load_record, save
    from .commands import console

    record = load_record(args.record) if args.record else None  # a bad record fails before the sweep
    out = check_output_file(args.out, force=args.force, what="--out") if args.out else None  # so does a bad --out
    result = probe_checkpoint(args.checkpoint, args.dataset, n=args.n, batch_size=args.batch_size, eps=args.eps,
                              settings=args.setting, lipschitz=not args.no_lipschitz, data_dir=args.data_dir,
                              quiet=False)
    console.print(probe_table(result), highlight=False, markup=False)
    if out is not None:
        write_atomic(out, json.dumps(result.to_dict(), indent=1))
    if record is not None:
        ode = dataclasses.replace(record.evaluation.ode or OdeInfo(), probe=result)  # a ProbeInfo already
        save(dataclasses.replace(record, evaluation=dataclasses.replace(record.evaluation, ode=ode)), args.record,
             overwrite=True)
    return 0
