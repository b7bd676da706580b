"""The statistics behind every accuracy robustode reports: intervals for a proportion, paired tests.

    wilson(450, 1000)                     # 95% Wilson score interval of 45.0% on n = 1000
    mcnemar_exact(b=30, c=12)             # two-sided p-value for two models on the same points

An accuracy on n test points is a binomial proportion; its 95% interval is the Wilson
score interval by default (close to nominal coverage even near 0 and 1, where the
normal "plus or minus 1.96 standard errors" interval breaks down). Clopper-Pearson
(exact, conservative) is available. Two runs evaluated on the same points are
compared with McNemar's exact test on the points where they disagree: far more
power than comparing two intervals, since shared easy and hard points cancel.
"""

from __future__ import annotations

import math

from scipy.stats import beta

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
METHODS = ("wilson", "clopper-pearson")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval (Wilson 1927) of ``successes`` out of ``n``."""
    _check(successes, n)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # At 0 or n successes the bound is exactly 0 or 1; float cancellation would store 3.5e-18 instead.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    return low, 1.0 if successes == n else min(1.0, centre + half)


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact Clopper-Pearson interval: the beta quantiles of the binomial (conservative)."""

    _check(successes, n)
    alpha = 1 - confidence
    lo = 0.0 if successes == 0 else float(beta.ppf(alpha / 2, successes, n - successes + 1))
    hi = 1.0 if successes == n else float(beta.ppf(1 - alpha / 2, successes + 1, n - successes))
    return lo, hi


def interval(successes: int, n: int, method: str = "wilson") -> tuple[float, float]:
    """The 95% interval of a proportion by ``method``: "wilson" or "clopper-pearson"."""
    if method == "wilson":
        return wilson(successes, n)
    if method == "clopper-pearson":
        return clopper_pearson(successes, n)
    raise ValueError(f"unknown interval method {method!r}; known: {', '.join(METHODS)}")


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: ``b`` points only the first model gets right, ``c`` only the second.

    Under the null hypothesis (the two are equally accurate) each discordant point
    favours either model with probability 1/2, so min(b, c) is binomial(b + c, 1/2).
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be >= 0, got {b} and {c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2 * tail / 2**n)


def _check(successes: int, n: int) -> None:
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")
