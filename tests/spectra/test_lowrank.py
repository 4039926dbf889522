# SPDX-License-Identifier: MIT
"""lowrank: singular values of the QR core (or of D^T X) agree with svdvals of the gradient."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.spectra.lowrank import (
    core,
    direct_is_cheaper,
    gradient_singular_values,
    r_factor,
    singular_values,
)

dims = st.integers(min_value=1, max_value=24)

GRAM_ATOL = 1e-7
"""Absolute error bound, in units of sigma_max, of float64 Gram eigenvalues' square roots
(sqrt(eps_64 k) for k <= 24, with a margin)."""


@settings(max_examples=40, deadline=None)
@given(s=st.integers(1, 3), t=dims, m=dims, n=dims, zero_rows=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_core_singular_values_match_svdvals_of_gradient(s, t, m, n, zero_rows, seed):
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(s, t, m, generator=gen, dtype=torch.float64)
    x = torch.randn(s, t, n, generator=gen, dtype=torch.float64)
    d[:, t - min(zero_rows, t):] = 0  # padding rows
    fast = gradient_singular_values(d, x)  # S k
    via_core = singular_values(core(r_factor(d), r_factor(x)))  # S min(m, n, t)
    slow = torch.linalg.svdvals(d.mT @ x)  # S min(m, n)
    k = min(m, n, t)
    assert fast.shape == (s, k)
    scale = slow[:, :1].clamp_min(1e-300)
    for got in (fast, via_core[:, :k]):
        torch.testing.assert_close(got / scale, slow[:, :k] / scale, rtol=0, atol=GRAM_ATOL)
    assert torch.all(slow[:, k:] <= 1e-10 * scale)  # the rest are zero


def test_small_singular_values_kept_to_float64_gram_accuracy():
    """A direction 1e-6 below the others survives: its sigma is exact to ~1e-8 sigma_max."""
    gen = torch.Generator().manual_seed(1)
    t, m, n = 5, 300, 200
    d = torch.randn(t, m, generator=gen, dtype=torch.float64)
    x = torch.randn(t, n, generator=gen, dtype=torch.float64)
    x[-1] *= 1e-6
    fast = gradient_singular_values(d, x)
    slow = torch.linalg.svdvals(d.T @ x)[:t]
    assert slow[-1] < 1e-5 * slow[0]
    torch.testing.assert_close(fast[:-1], slow[:-1], rtol=1e-10, atol=0)
    assert abs(fast[-1] - slow[-1]) < 1e-8 * slow[0]


def test_singular_values_of_wide_and_tall_and_zero():
    gen = torch.Generator().manual_seed(3)
    for shape in ((4, 9), (9, 4), (2, 3, 7)):
        a = torch.randn(*shape, generator=gen, dtype=torch.float64)
        torch.testing.assert_close(singular_values(a), torch.linalg.svdvals(a), rtol=1e-10,
                                   atol=1e-12)
    assert singular_values(torch.zeros(3, 5, dtype=torch.float64)).tolist() == [0.0] * 3


@pytest.mark.parametrize("t, m, n, direct", [
    (150, 576, 576, False), (500, 576, 576, False), (500, 1536, 576, False),
    (1000, 576, 576, True), (1000, 1536, 576, True), (700, 192, 576, True),
    (40, 4096, 4096, False),
])
def test_route_by_shapes(t, m, n, direct):
    assert direct_is_cheaper(t, m, n) is direct


def test_r_factor_shapes_and_core_reconstructs_gram():
    gen = torch.Generator().manual_seed(2)
    d = torch.randn(2, 7, 11, generator=gen, dtype=torch.float64)
    x = torch.randn(2, 7, 5, generator=gen, dtype=torch.float64)
    r_d, r_x = r_factor(d), r_factor(x)
    assert r_d.shape == (2, 7, 7) and r_x.shape == (2, 5, 7)
    # R^T R = A A^T (Q has orthonormal columns)
    torch.testing.assert_close(r_x.mT @ r_x, x @ x.mT)
    c = core(r_d, r_x)
    assert c.shape == (2, 7, 5)
