# SPDX-License-Identifier: MIT
"""The slow oracle: per-sample backward and a full SVD of each real weight gradient.

This is the Layer_Gradient paper's method (one sample at a time, one backward, SVD of
every gradient matrix), kept for tests and for anyone who wants to check the fast path:
for each sample alone (batch of one, padding cut off) the weight gradients come from
``torch.autograd.grad`` (so no ``.grad`` is touched), fused weights are sliced by the same
rows as in :func:`thoughtgrad.models.roles.split_fused`, and singular values are
``torch.linalg.svdvals`` in float64 of the whole m x n gradient.

The statistics are computed here, in numpy, by :func:`numpy_stats`, and not by the fast
path's :func:`thoughtgrad.spectra.metrics.spectrum_stats`: an oracle that shares the code
it checks cannot catch that code's mistakes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
from jaxtyping import Int
from torch import Tensor

from thoughtgrad.models.frozen import frozen
from thoughtgrad.models.roles import MatrixView
from thoughtgrad.spectra.capture import forward_logits, rule_for
from thoughtgrad.spectra.metrics import RANK_RTOL, sample_losses
from thoughtgrad.tasks.tokens import token_cross_entropy


def numpy_stats(s: np.ndarray) -> dict[str, float | int]:
    """The statistics of a full spectrum ``s`` (all min(m, n) singular values, descending).

    Same definitions as :func:`thoughtgrad.spectra.metrics.spectrum_stats`, written out
    again: nuclear norm, largest and smallest singular value, their ratio sigma_max /
    nuclear, Frobenius norm, effective rank exp(entropy of sigma / nuclear) (0 log 0 = 0),
    numerical rank (sigma > RANK_RTOL sigma_max). A zero matrix: ratio, effective rank NaN.
    """
    nuclear = float(np.sum(s))
    top = float(s[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        p = s / nuclear
        entropy = -sum(float(q) * math.log(q) for q in p if q > 0)
    return {"nuclear": nuclear, "sigma_max": top, "sigma_min": float(s[-1]),
            "ratio": top / nuclear if nuclear > 0 else math.nan,
            "frobenius": float(np.sqrt(np.sum(s * s))),
            "effective_rank": math.exp(entropy) if nuclear > 0 else math.nan,
            "rank": int(np.sum(s > RANK_RTOL * top))}


def reference_rows(model: nn.Module, input_ids: Int[Tensor, "B T"], labels: Int[Tensor, "B T"],
                   attention_mask: Int[Tensor, "B T"], views: Sequence[MatrixView], *,
                   loss_reduction: str = "mean") -> list[dict]:
    """One dict per sample x view with the statistics of :func:`numpy_stats`.

    Also ``n_tokens`` and ``loss`` (the sample's mean response cross-entropy in nats). The
    gradient is that of the sample's loss under ``loss_reduction``. Inputs are right-padded
    and already validated by :func:`thoughtgrad.spectra.api.layer_spectra`.
    """
    params = {v.param: model.get_parameter(v.param) for v in views}
    names = list(params)
    rows: list[dict] = []
    with frozen(model, trainable=params.values()):
        for s in range(input_ids.shape[0]):
            length = int(attention_mask[s].sum())
            ids = input_ids[s:s + 1, :length]  # 1 T
            lab = labels[s:s + 1, :length]  # 1 T
            logits = forward_logits(model, ids, torch.ones_like(ids))
            # the loss in float64: an fp32 cross-entropy's gradient over a 49k vocabulary
            # errs ~1e-4 in the spectra of a 30-layer model (measured), 20x the rest
            ce, mask = token_cross_entropy(logits.double(), lab.to(logits.device))
            objective = sample_losses(ce, mask, loss_reduction).sum()
            grads = dict(zip(names, torch.autograd.grad(objective, [params[n] for n in names]),
                             strict=True))
            n_tokens = int(mask.sum())
            loss = float(ce.detach().sum() / n_tokens)
            for v in views:
                g = grads[v.param].detach().to(torch.float64)
                if rule_for(model.get_submodule(v.module)).out_axis == 1:
                    g = g.T  # Conv1D stores n x m
                if v.rows is not None:
                    g = g[v.rows.to(g.device)]  # m_role x n
                sv = torch.linalg.svdvals(g).cpu().numpy()
                rows.append({"sample": s, "layer": v.layer, "role": v.role, "param": v.param,
                             **numpy_stats(sv),
                             "n_tokens": n_tokens, "loss": loss})
    return rows
