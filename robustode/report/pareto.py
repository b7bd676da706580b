"""The Pareto front of (training time, robust accuracy): what no other run beats on both."""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the points that no other point dominates, fastest first.

    A point is ``(cost, value)``; it is dominated when another point has cost
    <= and value >= with at least one strictly better. Exact duplicates do not
    dominate each other, so all copies of a front point are on the front.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    for i in order:
        cost, value = points[i]
        if not front or value > points[front[-1]][1] or (cost, value) == tuple(points[front[-1]]):
            front.append(i)
    return front
