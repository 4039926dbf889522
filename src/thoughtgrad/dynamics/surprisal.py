# SPDX-License-Identifier: MIT
"""Per-token surprisal and the logit-gradient norm it implies (seed 000, Lemmas 1 and 2).

For a response token x with model distribution p = softmax(y) over the vocabulary:

* surprisal ``-log2 p_x`` in **bits**;
* Lemma 1: the gradient of that token's cross-entropy with respect to the logits is
  ``g = p - e_x``, so ``||g||^2 = ||p||^2 - 2 p_x + 1``, known from the softmax alone
  (no backward pass). It is evaluated as ``(1 - p_x)^2 + sum_{i != x} p_i^2`` with
  ``1 - p_x = -expm1(log p_x)``, which keeps full precision when ``p_x`` is near 1;
* Lemma 2 (per token, always true): ``p_x^2 <= ||p||^2 <= p_x^2 + (1 - p_x)^2`` gives
  ``1 - p_x <= ||g|| <= sqrt(2) (1 - p_x)``, i.e. ``1 - ||g|| <= p_x <= 1 - ||g|| / sqrt(2)``.
  With a threshold ``tau`` on ``||g||``: a token with ``||g|| > tau`` has
  ``p_x < 1 - tau / sqrt(2)`` and one with ``||g|| <= tau`` has ``p_x >= 1 - tau``.

A note on the seed's wording. It states: if ``||g|| > tau`` then ``1 - sqrt(tau) < p_x <
1 - sqrt(tau / 2)``. With ``tau`` read as a threshold on ``||g||^2`` the upper bound is the
one above; the lower bound does not follow from ``||g|| > tau`` (a token with p_x = 0 has
``||g|| >= 1``); it holds for the complementary tokens (``||g||^2 <= tau``). The checks
here use the corrected, per-token form, on which there can be no violation except by
floating-point rounding (guarded by :data:`EPS_BOUND`).

Pure functions: logits and targets in, tensors out; :func:`token_table` and
:func:`sample_table` shape them into the ``surprisal`` and ``surprisal_samples`` rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from thoughtgrad.tasks.tokens import IGNORE_INDEX

LN2 = math.log(2.0)
SQRT2 = math.sqrt(2.0)
EPS_BOUND = 1e-5
"""Slack for the Lemma 2 checks: fp32 softmax rounding, far below any real violation."""
DEFAULT_TAU = 0.5
"""Default logit-gradient-norm threshold for counting spikes (``||g||`` lies in [0, sqrt 2])."""


@dataclass(frozen=True)
class TokenStats:
    """Per-token quantities for N (context, target) pairs, all fp32 tensors of shape [N].

    ``surprisal_bits``: ``-log2 p_x``. ``p_true``: ``p_x``. ``logit_grad_norm``: ``||p -
    e_x||`` (Lemma 1). ``lemma2_lower`` / ``lemma2_upper``: ``1 - ||g||`` and ``1 - ||g|| /
    sqrt 2``, the Lemma 2 interval for ``p_x``; ``lemma2_ok``: whether ``p_x`` lies in it.
    """

    surprisal_bits: Float[Tensor, " N"]
    p_true: Float[Tensor, " N"]
    logit_grad_norm: Float[Tensor, " N"]
    lemma2_lower: Float[Tensor, " N"]
    lemma2_upper: Float[Tensor, " N"]
    lemma2_ok: Bool[Tensor, " N"]


def token_stats(logits: Float[Tensor, "N V"], targets: Int[Tensor, " N"]) -> TokenStats:
    """Surprisal, ``p_true`` and the Lemma 1 logit-gradient norm of each row's target.

    Computed in fp32 (fp64 when the logits are fp64) from a log-softmax; nothing is
    differentiated. ``targets`` must be valid token ids (no -100).
    """
    dt = torch.float64 if logits.dtype == torch.float64 else torch.float32
    logp = torch.log_softmax(logits.detach().to(dt), dim=-1)  # N V
    logp_x = logp.gather(-1, targets[:, None]).squeeze(-1)  # N
    p = logp.exp()  # N V
    p_x = logp_x.exp()  # N
    one_minus = -torch.expm1(logp_x)  # N, 1 - p_x without cancellation
    others_sq = (p * p).scatter(-1, targets[:, None], 0.0).sum(-1)  # N, sum_{i != x} p_i^2
    g = torch.sqrt(one_minus * one_minus + others_sq)  # N
    lower = 1.0 - g
    upper = 1.0 - g / SQRT2
    ok = (p_x >= lower - EPS_BOUND) & (p_x <= upper + EPS_BOUND)
    return TokenStats(surprisal_bits=-logp_x / LN2, p_true=p_x, logit_grad_norm=g,
                      lemma2_lower=lower, lemma2_upper=upper, lemma2_ok=ok)


def logit_grad_norm_lemma1(p: Float[Tensor, "N V"], targets: Int[Tensor, " N"]
                           ) -> Float[Tensor, " N"]:
    """``sqrt(||p||^2 - 2 p_x + 1)``: Lemma 1 written literally, from probabilities.

    Kept as the textbook form for readers and tests; :func:`token_stats` uses the
    cancellation-free rearrangement of the same quantity.
    """
    p_x = p.gather(-1, targets[:, None]).squeeze(-1)  # N
    return torch.sqrt(((p * p).sum(-1) - 2 * p_x + 1).clamp(min=0.0))


def threshold_violations(p_true: Float[Tensor, " N"], grad_norm: Float[Tensor, " N"],
                         tau: float) -> int:
    """Tokens that break Lemma 2 in threshold form (see the module docstring).

    Counts tokens with ``||g|| > tau`` and ``p_x >= 1 - tau / sqrt 2``, plus tokens with
    ``||g|| <= tau`` and ``p_x < 1 - tau``, each beyond :data:`EPS_BOUND`. Always 0 for a
    correct softmax; a non-zero count means the numbers fed in are not a softmax's.
    """
    above = grad_norm > tau
    bad_hi = above & (p_true >= 1 - tau / SQRT2 + EPS_BOUND)
    bad_lo = ~above & (p_true < 1 - tau - EPS_BOUND)
    return int((bad_hi | bad_lo).sum())


def response_positions(labels: Int[Tensor, "B T"]) -> tuple[Int[Tensor, " N"], Int[Tensor, " N"]]:
    """(row, position) of every loss-carrying token, labels aligned to input ids (HF).

    Position ``t`` (>= 1) of row ``b`` is predicted from the logits at ``t - 1``.
    """
    mask = labels[:, 1:] != IGNORE_INDEX  # B T-1
    rows, cols = mask.nonzero(as_tuple=True)
    return rows, cols + 1


def token_table(logits: Float[Tensor, "B T V"], labels: Int[Tensor, "B T"], *,
                sample_ids: Sequence[object], conditions: Sequence[str]) -> pd.DataFrame:
    """One row per response token: the ``surprisal`` table's columns.

    ``position`` is the token's index in its sample's input ids; ``sample_ids`` and
    ``conditions`` label the batch rows.
    """
    rows, pos = response_positions(labels)
    targets = labels[rows, pos]  # N
    stats = token_stats(logits[rows, pos - 1], targets)
    r = rows.tolist()
    return pd.DataFrame({
        "sample_id": [sample_ids[i] for i in r],
        "condition": [conditions[i] for i in r],
        "position": pos.tolist(),
        "token_id": targets.tolist(),
        "surprisal_bits": stats.surprisal_bits.float().cpu().numpy(),
        "p_true": stats.p_true.float().cpu().numpy(),
        "logit_grad_norm": stats.logit_grad_norm.float().cpu().numpy(),
        "lemma2_lower": stats.lemma2_lower.float().cpu().numpy(),
        "lemma2_upper": stats.lemma2_upper.float().cpu().numpy(),
        "lemma2_ok": stats.lemma2_ok.cpu().numpy(),
    })


SAMPLE_COLUMNS = ("sample_id", "condition", "n_tokens", "total_surprisal_bits",
                  "mean_surprisal_bits", "max_surprisal_bits", "max_logit_grad_norm", "tau",
                  "n_above_tau", "lemma2_violations", "threshold_violations")


def sample_table(tokens: pd.DataFrame, *, tau: float = DEFAULT_TAU) -> pd.DataFrame:
    """Per (sample, condition): total / mean / max surprisal (bits), the count of tokens
    whose logit-gradient norm exceeds ``tau``, and Lemma 2 violations (per-token interval
    and threshold form; both must be 0)."""
    if tokens.empty:
        return pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    out = []
    for (sid, cond), grp in tokens.groupby(["sample_id", "condition"], sort=False):
        g = torch.tensor(grp["logit_grad_norm"].to_numpy())
        p = torch.tensor(grp["p_true"].to_numpy())
        out.append({
            "sample_id": sid, "condition": cond, "n_tokens": len(grp),
            "total_surprisal_bits": float(grp["surprisal_bits"].sum()),
            "mean_surprisal_bits": float(grp["surprisal_bits"].mean()),
            "max_surprisal_bits": float(grp["surprisal_bits"].max()),
            "max_logit_grad_norm": float(grp["logit_grad_norm"].max()),
            "tau": tau,
            "n_above_tau": int((grp["logit_grad_norm"] > tau).sum()),
            "lemma2_violations": int((~grp["lemma2_ok"]).sum()),
            "threshold_violations": threshold_violations(p, g, tau),
        })
    return pd.DataFrame(out, columns=list(SAMPLE_COLUMNS))
