# SPDX-License-Identifier: MIT
"""majority_vote and pass_at_k against hand-made lists and brute-force enumeration."""

from __future__ import annotations

import inspect
import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import thoughtgrad.evaluate as ev
from thoughtgrad.errors import UserError
from thoughtgrad.evaluate.voting import majority_vote, pass_at_k


def brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Fraction of all k-subsets of n samples (c correct) holding a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_reexported_from_package():
    assert ev.pass_at_k is pass_at_k and ev.majority_vote is majority_vote


def test_pass_at_k_matches_enumeration_of_every_subset():
    for n in range(1, 10):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k),
                                                            abs=1e-12), (n, c, k)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 400).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_matches_exact_binomial_ratio(nck):
    n, c, k = nck
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    n, c, k = 5000, 3, 200  # C(5000, 200) is far beyond float range
    exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
    assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9)


def test_pass_at_k_edges():
    assert pass_at_k(10, 0, 5) == 0.0
    assert pass_at_k(10, 6, 5) == 1.0  # fewer than k wrong samples: every subset hits
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(1, 1, 1) == 1.0


def test_pass_at_k_accepts_any_integral_type():
    """numpy integers (e.g. counts from ``ndarray.sum()``) and other Integrals give exactly
    the value of the plain-int call."""
    kinds = (int, np.int64, np.int32, np.uint16, np.int8)
    for n, c, k in ((10, 3, 2), (7, 0, 7), (12, 12, 1), (40, 5, 17)):
        want = pass_at_k(n, c, k)
        for kind in kinds:
            assert pass_at_k(kind(n), kind(c), kind(k)) == want, kind
        assert pass_at_k(np.int64(n), c, np.int16(k)) == want
    assert pass_at_k(np.int64(10), np.int64(3), 2) == pytest.approx(brute_pass_at_k(10, 3, 2))
    correct = np.array([True, False, True, False, False, False, True, False, False, False])
    assert pass_at_k(correct.size, correct.sum(), 4) == pass_at_k(10, 3, 4)


@pytest.mark.parametrize("n,c,k", [(5, 0, 6), (5, 6, 1), (5, -1, 1), (5, 1, 0), (0, 0, 1),
                                   (-2, 0, 1), (5, 1, -1), (5.0, 1, 1), (5, 1, True),
                                   (np.float64(5), 1, 1), (5, np.bool_(True), 1),
                                   (5, 1, np.int64(0)), ("5", 1, 1), (5, Fraction(1), 1)])
def test_pass_at_k_rejects_bad_input_in_one_line(n, c, k):
    # its own check, as a caller without the test-time type checker meets it (that checker
    # refuses the non-integers first)
    with pytest.raises(UserError) as info:
        inspect.unwrap(pass_at_k)(n, c, k)
    assert "\n" not in str(info.value) and "pass_at_k" in str(info.value)


@pytest.mark.parametrize("answers,expected", [
    ([], None),
    ([None, None], None),
    ([7], 7),
    ([1, 2, 2], 2),
    ([3, 5, 5, 3], 3),          # tie 2-2: 3 appears first
    ([5, 3, 3, 5], 5),          # same counts, other order
    ([None, 4, 9, None, 9, 4], 4),  # None abstains; tie goes to 4 (seen first)
    ([None, None, 8], 8),
    ([1, 2, 3], 1),             # all tied at one vote
    ([2, 1, 1, 2, 1], 1),
    (["b", "a", "a", "b"], "b"),
])
def test_majority_vote_hand_made(answers, expected):
    assert majority_vote(answers) == expected


def oracle_majority(answers):
    """Scan the list in order; the first answer whose count is the maximum wins."""
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    top = max(votes.count(a) for a in votes)
    return next(a for a in votes if votes.count(a) == top)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(0, 4)), max_size=12))
def test_majority_vote_matches_oracle(answers):
    assert majority_vote(answers) == oracle_majority(answers)
