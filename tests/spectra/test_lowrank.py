# SPDX-License-Identifier: MIT
"""lowrank: singular values of the QR core agree with svdvals of the formed gradient."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.spectra.lowrank import core, gradient_singular_values, r_factor

dims = st.integers(min_value=1, max_value=24)


@settings(max_examples=40, deadline=None)
@given(s=st.integers(1, 3), t=dims, m=dims, n=dims, zero_rows=st.integers(0, 3),
       seed=st.integers(0, 2**16))
def test_core_singular_values_match_svdvals_of_gradient(s, t, m, n, zero_rows, seed):
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(s, t, m, generator=gen, dtype=torch.float64)
    x = torch.randn(s, t, n, generator=gen, dtype=torch.float64)
    d[:, t - min(zero_rows, t):] = 0  # padding rows
    fast = gradient_singular_values(d, x)  # S k
    slow = torch.linalg.svdvals(d.mT @ x)  # S min(m, n)
    k = min(m, n, t)
    assert fast.shape == (s, k)
    scale = slow[:, :1].clamp_min(1e-300)
    torch.testing.assert_close(fast / scale, slow[:, :k] / scale, rtol=0, atol=1e-10)
    assert torch.all(slow[:, k:] <= 1e-10 * scale)  # the rest are zero


def test_core_of_low_rank_gradient_keeps_small_singular_values():
    gen = torch.Generator().manual_seed(1)
    t, m, n = 5, 300, 200
    d = torch.randn(t, m, generator=gen, dtype=torch.float64)
    x = torch.randn(t, n, generator=gen, dtype=torch.float64)
    x[-1] *= 1e-6  # one tiny direction: a Gram-eigenvalue method would lose it
    fast = gradient_singular_values(d, x)
    slow = torch.linalg.svdvals(d.T @ x)[:t]
    torch.testing.assert_close(fast, slow, rtol=1e-8, atol=0)


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
