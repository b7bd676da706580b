"""`robustode probe CHECKPOINT`: the ODE probe of a trained model (robustode.probing)."""

from __future__ import annotations

import dataclasses
import json

from ..errors import ConfigError
from ..registry import parse_spec
from .parser import _checked, _command, _data_options, positive_int


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
    p.add_argument("--eps", default="8/255", metavar="EPS", help="PGD-20's budget (default 8/255)")
    p.add_argument("--setting", type=setting, action="append", metavar="KEY=VALUE,...",
                   help="a setting to sweep besides the model's own (repeatable; default: the standard sweep)")
    p.add_argument("--no-lipschitz", action="store_true", help="skip the Lipschitz estimates")
    p.add_argument("--record", metavar="RECORD", help="add the probe to this record (evaluation.ode.probe)")
    p.add_argument("--out", metavar="FILE", help="also write the probe as JSON")
    p.set_defaults(run=cmd_probe)


def cmd_probe(args) -> int:
    from ..probe_api import probe_checkpoint
    from ..probing import probe_table
    from ..records import OdeInfo, ProbeInfo, load_record, save
    from ..records.validate import build
    from ..rules import parse_fraction
    from .commands import console

    record = load_record(args.record) if args.record else None  # a bad record fails before the sweep
    result = probe_checkpoint(args.checkpoint, args.dataset, n=args.n, batch_size=args.batch_size,
                              eps=parse_fraction(args.eps, "eps"), settings=args.setting,
                              lipschitz=not args.no_lipschitz, data_dir=args.data_dir, quiet=False)
    console.print(probe_table(result), highlight=False, markup=False)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result.to_dict(), f, indent=1)
    if record is not None:
        probe = build(ProbeInfo, result.to_dict(), args.record, "evaluation.ode.probe.")
        ode = dataclasses.replace(record.evaluation.ode or OdeInfo(), probe=probe)
        save(dataclasses.replace(record, evaluation=dataclasses.replace(record.evaluation, ode=ode)), args.record,
             overwrite=True)
    return 0
