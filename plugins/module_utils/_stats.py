# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The few statistics a canary verdict needs, in plain Python (no SciPy on a controller).

- ``fisher_greater``: one-sided Fisher exact test on a 2x2 table of counts, "is the canary's share of
  failures (or of one log kind) higher than the reference's?". Exact, with integer binomials.
- ``mann_whitney_greater``: one-sided Mann-Whitney U test, "are the canary's latencies generally
  higher than the reference's?", by the normal approximation with tie and continuity corrections.
- ``weighted_percentile``: a nearest-rank percentile over values that each stand for several samples
  (the bounded latency lists of several Engines pooled).
"""

from __future__ import annotations

import math


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def fisher_greater(a_hits: int, a_total: int, b_hits: int, b_total: int) -> float:
    """One-sided p-value that group a's share of hits is higher than group b's (Fisher's exact test).

    The table is [[a_hits, a_total - a_hits], [b_hits, b_total - b_hits]]. With all margins fixed, the
    hits of group a follow a hypergeometric law; the p-value is P(X >= a_hits). 1.0 when either group
    is empty or nobody hit. ValueError on counts that do not make a table.
    """
    for name, value in (("a_hits", a_hits), ("a_total", a_total), ("b_hits", b_hits), ("b_total", b_total)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number of 0 or more (got {value!r})")
    if a_hits > a_total or b_hits > b_total:
        raise ValueError(f"hits cannot exceed totals ({a_hits}/{a_total}, {b_hits}/{b_total})")
    total, hits = a_total + b_total, a_hits + b_hits
    if a_total == 0 or b_total == 0 or hits == 0:
        return 1.0
    denominator = math.comb(total, a_total)
    upper = min(hits, a_total)
    numerator = sum(math.comb(hits, x) * math.comb(total - hits, a_total - x) for x in range(a_hits, upper + 1))
    return min(1.0, numerator / denominator)


def _ranks(values: list[float]) -> tuple[list[float], float]:
    """Mid-ranks (1-based) of `values` in their order, and the tie term sum(t^3 - t) over groups of ties."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties = 0.0
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        rank = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = rank
        size = j - i + 1
        ties += size ** 3 - size
        i = j + 1
    return ranks, ties


def mann_whitney_greater(x: list[float], y: list[float]) -> dict:
    """One-sided Mann-Whitney U test that the values of `x` tend to be larger than those of `y`.

    Returns {u, z, p_value}: U of x (the number of pairs where x wins, ties counting half), the z score
    with the tie and continuity corrections, and P(U >= u) by the normal approximation (good from about
    8 values a side). p_value 1.0 when a side is empty or every value is equal.
    """
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return dict(u=None, z=None, p_value=1.0)
    ranks, ties = _ranks([float(v) for v in x] + [float(v) for v in y])
    u = sum(ranks[:n1]) - n1 * (n1 + 1) / 2
    n = n1 + n2
    mean = n1 * n2 / 2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))) if n > 1 else 0.0
    if variance <= 0:
        return dict(u=u, z=None, p_value=1.0)
    z = (u - mean - 0.5) / math.sqrt(variance)
    return dict(u=u, z=round(z, 4), p_value=min(1.0, normal_sf(z)))


def weighted_percentile(items: list[tuple[float, float]], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of (value, weight) pairs; None when there is no weight.

    With every weight 1 it is the nearest-rank percentile of the values.
    """
    items = sorted((value, weight) for value, weight in items if weight > 0)
    total = sum(item[1] for item in items)
    if not items or total <= 0:
        return None
    target = q / 100 * total - 1e-9 * total  # the tolerance keeps float sums from skipping a rank
    seen = 0.0
    for value, weight in items:
        seen += weight
        if seen >= target:
            return value
    return items[-1][0]
