# SPDX-License-Identifier: MIT
"""Surprisal and Lemma 1/2 against autograd and a hand log-softmax gather."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.dynamics.surprisal import (
    logit_grad_norm_lemma1,
    sample_table,
    threshold_violations,
    token_stats,
    token_table,
)


def random_logits(n: int, v: int, seed: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, v, generator=g, dtype=torch.float64) * scale
    targets = torch.randint(0, v, (n,), generator=g)
    return logits, targets


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 20), v=st.integers(2, 60), seed=st.integers(0, 10_000),
       scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]))
def test_logit_grad_norm_equals_autograd(n: int, v: int, seed: int, scale: float) -> None:
    logits, targets = random_logits(n, v, seed, scale)
    leaf = logits.clone().requires_grad_(True)
    F.cross_entropy(leaf, targets, reduction="sum").backward()
    want = leaf.grad.norm(dim=-1)  # N: row r's gradient is that token's own CE gradient
    stats = token_stats(logits, targets)
    torch.testing.assert_close(stats.logit_grad_norm, want, rtol=1e-9, atol=1e-12)
    literal = logit_grad_norm_lemma1(torch.softmax(logits, -1), targets)
    torch.testing.assert_close(literal, want, rtol=1e-6, atol=1e-7)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 20), v=st.integers(2, 60), seed=st.integers(0, 10_000),
       scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]))
def test_surprisal_equals_hand_gather(n: int, v: int, seed: int, scale: float) -> None:
    logits, targets = random_logits(n, v, seed, scale)
    # hand log-softmax: y - logsumexp(y), computed without torch.log_softmax
    m = logits.max(-1, keepdim=True).values
    lse = m.squeeze(-1) + torch.log(torch.exp(logits - m).sum(-1))
    want = -(logits[torch.arange(n), targets] - lse) / math.log(2)
    stats = token_stats(logits, targets)
    torch.testing.assert_close(stats.surprisal_bits, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(stats.p_true, torch.exp(-want * math.log(2)), rtol=1e-10,
                               atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 30), v=st.integers(2, 100), seed=st.integers(0, 10_000),
       scale=st.sampled_from([0.1, 1.0, 5.0, 30.0]), tau=st.floats(0.01, 1.4))
def test_lemma2_never_violated_fp32(n: int, v: int, seed: int, scale: float, tau: float) -> None:
    logits, targets = random_logits(n, v, seed, scale)
    stats = token_stats(logits.float(), targets)
    assert bool(stats.lemma2_ok.all()), stats.p_true[~stats.lemma2_ok]
    g, p = stats.logit_grad_norm, stats.p_true
    assert bool((g * g <= 2 * (1 - p) ** 2 + 1e-5).all())  # always-true upper bound
    assert bool((g >= 1 - p - 1e-5).all())  # always-true lower bound
    assert threshold_violations(p, g, tau) == 0


def test_threshold_check_catches_non_softmax_numbers() -> None:
    """A made-up (p, ||g||) pair outside Lemma 2's interval is counted."""
    p = torch.tensor([0.99, 0.2])
    g = torch.tensor([0.9, 0.1])  # p=0.99 cannot have ||g||=0.9; p=0.2 cannot have 0.1
    assert threshold_violations(p, g, 0.5) == 2


def test_seed_literal_lower_bound_is_not_a_theorem() -> None:
    """The seed's 'if ||g||^2 > tau then p_x > 1 - sqrt(tau)' fails for confident mistakes;
    the corrected per-token interval holds on the same token."""
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    targets = torch.tensor([1])
    s = token_stats(logits, targets)
    tau = 0.25
    assert float(s.logit_grad_norm[0]) ** 2 > tau
    assert float(s.p_true[0]) < 1 - math.sqrt(tau)  # the literal lower bound fails
    assert bool(s.lemma2_ok[0])


def test_token_table_alignment_and_sample_table() -> None:
    """Labels aligned to input ids: token t is scored by the logits at t-1."""
    g = torch.Generator().manual_seed(0)
    B, T, V = 2, 6, 7
    logits = torch.randn(B, T, V, generator=g)
    ids = torch.randint(0, V, (B, T), generator=g)
    labels = ids.clone()
    labels[0, :3] = -100  # prompt of sample 0: positions 0..2
    labels[1, :2] = -100
    labels[1, 5] = -100  # padding
    df = token_table(logits, labels, sample_ids=["a", "b"], conditions=["cot", "direct"])
    assert len(df) == (T - 3) + (T - 3)
    assert list(df.columns[:7]) == ["sample_id", "condition", "position", "token_id",
                                    "surprisal_bits", "p_true", "logit_grad_norm"]
    row = df[(df.sample_id == "b") & (df.position == 3)].iloc[0]
    want = -torch.log_softmax(logits[1, 2], -1)[ids[1, 3]] / math.log(2)
    assert row.surprisal_bits == pytest.approx(float(want), rel=1e-5)
    assert row.condition == "direct" and row.token_id == int(ids[1, 3])
    per = sample_table(df, tau=0.9)
    a = per[per.sample_id == "a"].iloc[0]
    sub = df[df.sample_id == "a"]
    assert a.n_tokens == 3
    assert a.total_surprisal_bits == pytest.approx(float(sub.surprisal_bits.sum()))
    assert a.max_surprisal_bits == pytest.approx(float(sub.surprisal_bits.max()))
    assert a.n_above_tau == int((sub.logit_grad_norm > 0.9).sum())
    assert a.lemma2_violations == 0 and a.threshold_violations == 0
