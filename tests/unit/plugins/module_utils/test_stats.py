# Copyright (c) 2026 September Engine maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The statistics of the canary verdict against textbook values and values computed by hand."""

from __future__ import annotations

import math

import pytest

from ansible_collections.september.engine.plugins.module_utils import _stats as s


@pytest.mark.parametrize("z, expected", [
    (0.0, 0.5),
    (1.6448536, 0.05),
    (1.959964, 0.025),
    (-1.959964, 0.975),
    (3.090232, 0.001),
])
def test_normal_sf(z, expected):
    assert s.normal_sf(z) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("table, expected", [
    # Fisher's lady tasting tea: 3 of 4 cups right, one-sided p = 17/70.
    ((3, 4, 1, 4), 17 / 70),
    # Wikipedia's dieting example (9 of 12 women, 1 of 12 men dieting): one-tailed p = 0.001379728.
    ((9, 12, 1, 12), 0.001379728),
    # The other direction of the same table: 1 - P(no man dieting) = 1 - C(14,12) / C(24,12).
    ((1, 12, 9, 12), 1 - 91 / 2704156),
    # No hit anywhere, or an empty side: no evidence.
    ((0, 10, 0, 10), 1.0),
    ((3, 3, 0, 0), 1.0),
    ((0, 0, 3, 10), 1.0),
    # All 5 hits in the canary's 15 turns, none in 60 reference turns: C(15,5) / C(75,5).
    ((5, 15, 0, 60), math.comb(15, 5) / math.comb(75, 5)),
    # One failed turn of 20 against none of 20 is not significant: p = 1/2.
    ((1, 20, 0, 20), 0.5),
])
def test_fisher_greater(table, expected):
    assert s.fisher_greater(*table) == pytest.approx(expected, rel=1e-6)


def test_fisher_greater_on_large_counts_stays_exact_and_fast():
    p = s.fisher_greater(300, 1000, 5, 1000)
    assert 0 <= p < 1e-60
    assert s.fisher_greater(10, 1000, 10, 1000) > 0.5


@pytest.mark.parametrize("args, message", [
    ((-1, 3, 0, 3), "a_hits must be"),
    ((4, 3, 0, 3), "cannot exceed"),
    ((1, 3, True, 3), "b_hits must be"),
    ((1, 3.0, 0, 3), "a_total must be"),
])
def test_fisher_greater_refuses(args, message):
    with pytest.raises(ValueError, match=message):
        s.fisher_greater(*args)


def test_mann_whitney_no_overlap():
    # U = 9 of 9 pairs, mean 4.5, variance 3*3*7/12 = 5.25: z = (9 - 4.5 - 0.5) / sqrt(5.25).
    got = s.mann_whitney_greater([4, 5, 6], [1, 2, 3])
    assert got["u"] == 9
    assert got["z"] == pytest.approx(4 / math.sqrt(5.25), abs=1e-4)
    assert got["p_value"] == pytest.approx(0.04043, abs=1e-4)


def test_mann_whitney_with_ties():
    # x = [2, 3], y = [1, 2]: mid-ranks 2.5 and 4 for x, U = 3.5; one tie of 2: variance 4/12 * (5 - 6/12) = 1.5.
    got = s.mann_whitney_greater([2, 3], [1, 2])
    assert got["u"] == 3.5
    assert got["z"] == pytest.approx(1 / math.sqrt(1.5), abs=1e-4)
    assert got["p_value"] == pytest.approx(s.normal_sf(1 / math.sqrt(1.5)), abs=1e-9)


def test_mann_whitney_slower_latencies_are_significant_one_outlier_is_not():
    base = [250 + i % 20 for i in range(40)]
    assert s.mann_whitney_greater([1000 + i % 20 for i in range(40)], base)["p_value"] < 1e-10
    one_slow = [*base[:-1], 9000]
    assert s.mann_whitney_greater(one_slow, base)["p_value"] > 0.3
    # The other direction: faster is not "greater".
    assert s.mann_whitney_greater(base, [1000 + i for i in range(40)])["p_value"] > 0.99


@pytest.mark.parametrize("x, y", [([], [1, 2]), ([1], []), ([5, 5], [5, 5])])
def test_mann_whitney_without_evidence(x, y):
    assert s.mann_whitney_greater(x, y)["p_value"] == 1.0


@pytest.mark.parametrize("items, q, expected", [
    ([], 50, None),
    ([(5, 1)], 99, 5),
    ([(1, 1), (2, 1), (3, 1), (4, 1)], 50, 2),
    ([(4, 1), (3, 1), (2, 1), (1, 1)], 99, 4),
    ([(v, 1) for v in range(1, 21)], 99, 20),
    ([(v, 1) for v in range(1, 101)], 95, 95),
    # A value standing for 3 samples outweighs one standing for 1.
    ([(100, 3), (1000, 1)], 50, 100),
    ([(100, 3), (1000, 1)], 99, 1000),
    ([(100, 1), (1000, 3)], 50, 1000),
    ([(1, 0), (2, 0)], 50, None),
])
def test_weighted_percentile(items, q, expected):
    assert s.weighted_percentile(items, q) == expected
