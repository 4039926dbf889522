# SPDX-License-Identifier: MIT
"""metrics: spectrum statistics vs numpy, per-sample losses vs a hand log-softmax."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.spectra.metrics import (
    RANK_RTOL,
    sample_losses,
    spectrum_stats,
)
from thoughtgrad.tasks.tokens import token_cross_entropy


def _numpy_stats(g: np.ndarray) -> dict[str, float]:
    s = np.linalg.svd(g, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return {"nuclear": s.sum(), "sigma_max": s.max(), "sigma_min": s.min(),
            "ratio": s.max() / s.sum(), "frobenius": np.linalg.norm(g),
            "effective_rank": math.exp(-(p * np.log(p)).sum()),
            "rank": int((s > RANK_RTOL * s.max()).sum())}


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 12), t=st.integers(1, 12), seed=st.integers(0, 999))
def test_stats_match_numpy_on_full_and_truncated_spectra(m, n, t, seed):
    rng = np.random.default_rng(seed)
    g = rng.standard_normal((m, t)) @ rng.standard_normal((t, n))  # rank <= t
    ref = _numpy_stats(g)
    k = min(m, n, t)
    s = torch.linalg.svdvals(torch.from_numpy(g))[:k]  # the leading k, rest known zero
    got = spectrum_stats(s, min(m, n))
    for name, value in ref.items():
        if name == "sigma_min":
            assert abs(float(got[name]) - value) <= 1e-9 * ref["sigma_max"], name
        elif name == "rank":
            assert int(got[name]) == value
        else:
            assert float(got[name]) == pytest.approx(value, rel=1e-9), name


def test_stats_batched_and_zero_matrix():
    s = torch.tensor([[3.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    got = spectrum_stats(s, 3)
    assert got["nuclear"].tolist() == [4.0, 0.0]
    assert got["rank"].tolist() == [2, 0]
    assert got["effective_rank"][0].item() == pytest.approx(
        math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert math.isnan(got["ratio"][1].item())


def test_token_losses_against_hand_log_softmax():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64)
    labels = torch.tensor([[-100, -100, 3, 4, 1], [-100, 2, 6, -100, -100]])
    ce, mask = token_cross_entropy(logits, labels)
    assert mask.tolist() == [[False, True, True, True], [True, True, False, False]]
    logp = torch.log_softmax(logits, -1)
    hand = [[-logp[b, t - 1, labels[b, t]].item() for t in range(1, 5) if labels[b, t] != -100]
            for b in range(2)]
    means = sample_losses(ce, mask, "mean")
    sums = sample_losses(ce, mask, "sum")
    for b in range(2):
        assert sums[b].item() == pytest.approx(sum(hand[b]))
        assert means[b].item() == pytest.approx(sum(hand[b]) / len(hand[b]))
    with pytest.raises(ValueError):
        sample_losses(ce, mask, "median")


def test_kept_token_cross_entropy_equals_torch_with_gradients(monkeypatch):
    """The memory-lean cross-entropy (chunked log-sum-exp, softmax - onehot backward)
    against ``F.cross_entropy`` in float64, values and gradients, chunks smaller than N."""
    import torch.nn.functional as F

    from thoughtgrad.spectra import metrics

    monkeypatch.setattr(metrics, "CE_ROWS", 3)
    gen = torch.Generator().manual_seed(0)
    logits = (5 * torch.randn(10, 37, generator=gen, dtype=torch.float64)).requires_grad_()
    targets = torch.randint(0, 37, (10,), generator=gen)
    weights = torch.rand(10, generator=gen, dtype=torch.float64)
    ours = metrics.kept_token_cross_entropy(logits, targets)
    (g_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    theirs = F.cross_entropy(logits, targets, reduction="none")
    (g_theirs,) = torch.autograd.grad((theirs * weights).sum(), logits)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda x: metrics.kept_token_cross_entropy(x, targets[:4] % 6),
        (logits[:4, :6].detach().requires_grad_(),))
