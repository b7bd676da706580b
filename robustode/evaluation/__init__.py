"""The shared evaluator: every accuracy robustode prints comes from ``evaluate``.

    from robustode.evaluation import evaluate
    result = evaluate(model, dataset, attacks, threat, n=1000)   # robustode.evaluate builds them from names
    result.clean_acc, result.robust["pgd-20"], result.worst_case, result.flags["fired"]

``evaluate_sharded`` is the same under torchrun, each rank on its shard of the
test points; ``masking`` holds the gradient-masking checks.
"""

from .evaluator import evaluate
from .result import EvalResult
from .sharded import evaluate_sharded

__all__ = ["EvalResult", "evaluate", "evaluate_sharded"]
