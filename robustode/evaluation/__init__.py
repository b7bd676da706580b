"""The shared evaluator: every accuracy robustode prints comes from ``evaluate``.

    from robustode.evaluation import evaluate
    result = evaluate(model, "cifar10", attacks=("pgd-20", "autoattack"), n=1000)
    result.clean_acc, result.robust["pgd-20"], result.worst_case, result.flags["fired"]

``evaluate_sharded`` is the same under torchrun, each rank on its shard of the
test points; ``masking`` holds the gradient-masking checks.
"""

from .evaluator import EvalResult, evaluate
from .sharded import evaluate_sharded

__all__ = ["EvalResult", "evaluate", "evaluate_sharded"]
