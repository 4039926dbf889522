# SPDX-License-Identifier: MIT
"""report/stats.py against direct numpy computations and brute-force pair counting."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.report import stats


def test_mad_matches_adjacent_differences_on_hand_curve() -> None:
    layers = [4, 0, 2, 1, 3, 5, 6]  # unsorted on purpose
    values = [5.0, 1.0, 4.0, 2.0, 8.0, 3.0, 3.5]
    by_layer = dict(zip(layers, values, strict=True))
    v = [by_layer[i] for i in range(7)]  # 1, 2, 4, 8, 5, 3, 3.5
    seg = stats.mad_segments(layers, values)
    assert seg["all"] == pytest.approx((1 + 2 + 4 + 3 + 2 + 0.5) / 6)
    # 7 layers split 3 / 2 / 2: [0,1,2] [3,4] [5,6]
    assert seg["early"] == pytest.approx((abs(v[1] - v[0]) + abs(v[2] - v[1])) / 2)
    assert seg["middle"] == pytest.approx(abs(v[4] - v[3]))
    assert seg["late"] == pytest.approx(abs(v[6] - v[5]))


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=40))
@settings(max_examples=40, deadline=None)
def test_mad_segments_any_layer_count(values: list[float]) -> None:
    n = len(values)
    seg = stats.mad_segments(list(range(n)), values)
    assert seg["all"] == pytest.approx(np.mean([abs(values[i + 1] - values[i])
                                                for i in range(n - 1)]), rel=1e-9, abs=1e-9)
    parts = np.array_split(np.arange(n), 3)
    for name, part in zip(stats.SEGMENTS, parts, strict=True):
        if len(part) < 2:
            assert np.isnan(seg[name])
        else:
            direct = sum(abs(values[i + 1] - values[i]) for i in part[:-1]) / (len(part) - 1)
            assert seg[name] == pytest.approx(direct, rel=1e-9, abs=1e-9)


def test_relative_difference_and_top_layers() -> None:
    layers = np.array([0, 1, 2, 3])
    a = np.array([2.0, 3.0, 1.0, 10.0])
    b = np.array([1.0, 3.0, 2.0, 4.0])
    rd = stats.relative_difference(layers, a, b, top=2)
    rel = (a - b) / np.abs(b)  # 1, 0, -0.5, 1.5
    assert rd["mean_rel"] == pytest.approx(rel.mean())
    assert rd["mean_abs_rel"] == pytest.approx(np.abs(rel).mean())
    assert rd["top_layers"] == [3, 0]


def test_relative_difference_skips_zero_reference() -> None:
    rd = stats.relative_difference([0, 1], [1.0, 2.0], [0.0, 1.0])
    assert rd["mean_rel"] == pytest.approx(1.0)
    assert rd["top_layers"] == [1]


def brute_auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    total = 0.0
    for p, n in itertools.product(pos, neg):
        total += 1.0 if p > n else 0.5 if p == n else 0.0
    return total / (len(pos) * len(neg))


@given(st.lists(st.integers(0, 6), min_size=1, max_size=15),
       st.lists(st.integers(0, 6), min_size=1, max_size=15))
@settings(max_examples=60, deadline=None)
def test_auroc_equals_pair_counting_with_ties(pos: list[int], neg: list[int]) -> None:
    p, n = np.array(pos, float), np.array(neg, float)
    assert stats.auroc(p, n) == pytest.approx(brute_auroc(p, n), abs=1e-12)


def test_auroc_ci_point_and_bootstrap_against_loop() -> None:
    rng = np.random.default_rng(3)
    pos = rng.normal(1.0, 1.0, 25).round(1)
    neg = rng.normal(0.0, 1.0, 30).round(1)
    auc, lo, hi = stats.auroc_ci(pos, neg, n_boot=300, seed=7)
    assert auc == pytest.approx(brute_auroc(pos, neg))
    # the same resamples, one at a time
    r = np.random.default_rng(7)
    ip = r.integers(0, pos.size, size=(300, pos.size))
    iq = r.integers(0, neg.size, size=(300, neg.size))
    boots = [stats.auroc(pos[ip[b]], neg[iq[b]]) for b in range(300)]
    assert lo == pytest.approx(np.quantile(boots, 0.025))
    assert hi == pytest.approx(np.quantile(boots, 0.975))
    assert lo <= auc <= hi


def test_auroc_ci_single_sample_has_no_interval() -> None:
    auc, lo, hi = stats.auroc_ci(np.array([1.0]), np.array([0.0, 2.0]))
    assert auc == 0.5 and np.isnan(lo) and np.isnan(hi)


def test_bootstrap_mean_ci_against_loop() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3))
    x[4, 1] = np.nan
    mean, lo, hi = stats.bootstrap_mean_ci_columns(x, n_boot=200, seed=5)
    np.testing.assert_allclose(mean, np.nanmean(x, axis=0))
    idx = np.random.default_rng(5).integers(0, 12, size=(200, 12))
    for c in range(3):
        boots = [np.nanmean(x[i, c]) for i in idx]
        assert lo[c] == pytest.approx(np.quantile(boots, 0.025))
        assert hi[c] == pytest.approx(np.quantile(boots, 0.975))
    m1, lo1, hi1 = stats.bootstrap_mean_ci(x[:, 0], n_boot=200, seed=5)
    assert (m1, lo1, hi1) == pytest.approx((mean[0], lo[0], hi[0]))


def test_bootstrap_single_sample_gives_nan_interval() -> None:
    m, lo, hi = stats.bootstrap_mean_ci(np.array([2.5]))
    assert m == 2.5 and np.isnan(lo) and np.isnan(hi)


def test_cohens_d_against_formula() -> None:
    pos = np.array([3.0, 4.0, 5.0, 6.0])
    neg = np.array([1.0, 2.0, 2.5])
    sp = np.sqrt((3 * np.var(pos, ddof=1) + 2 * np.var(neg, ddof=1)) / 5)
    assert stats.cohens_d(pos, neg) == pytest.approx((pos.mean() - neg.mean()) / sp)
    assert np.isnan(stats.cohens_d(np.array([1.0, 1.0]), np.array([1.0])))
