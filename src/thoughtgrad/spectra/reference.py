# SPDX-License-Identifier: MIT
"""The slow oracle: per-sample backward and a full SVD of each real weight gradient.

This is the Layer_Gradient paper's method (one sample at a time, one backward, SVD of
every gradient matrix), kept for tests and for anyone who wants to check the fast path:
for each sample alone (batch of one, padding cut off) the weight gradients come from
``torch.autograd.grad`` (so no ``.grad`` is touched), fused weights are sliced by the same
rows as in :func:`thoughtgrad.models.roles.split_fused`, and singular values are
``torch.linalg.svdvals`` in float64.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from jaxtyping import Int
from torch import Tensor

from thoughtgrad.models.roles import MatrixView
from thoughtgrad.spectra.capture import forward_logits, rule_for
from thoughtgrad.spectra.metrics import sample_losses, spectrum_stats, token_cross_entropy


def reference_rows(model: nn.Module, input_ids: Int[Tensor, "B T"], labels: Int[Tensor, "B T"],
                   attention_mask: Int[Tensor, "B T"], views: Sequence[MatrixView], *,
                   loss_reduction: str = "mean") -> list[dict]:
    """One dict per sample x view with the statistics of :func:`spectrum_stats`.

    Also ``n_tokens`` and ``loss`` (the sample's mean response cross-entropy in nats). The
    gradient is that of the sample's loss under ``loss_reduction``. Inputs are right-padded
    and already validated by :func:`thoughtgrad.spectra.api.layer_spectra`.
    """
    params = {v.param: model.get_parameter(v.param) for v in views}
    names = list(params)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    rows: list[dict] = []
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        for p in params.values():
            p.requires_grad_(True)
        model.eval()
        for s in range(input_ids.shape[0]):
            length = int(attention_mask[s].sum())
            ids = input_ids[s:s + 1, :length]  # 1 T
            lab = labels[s:s + 1, :length]  # 1 T
            logits = forward_logits(model, ids, torch.ones_like(ids))
            ce, mask = token_cross_entropy(logits, lab)
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
                sv = torch.linalg.svdvals(g)
                stats = spectrum_stats(sv, min(g.shape))
                rows.append({"sample": s, "layer": v.layer, "role": v.role, "param": v.param,
                             **{k: t.item() for k, t in stats.items()},
                             "n_tokens": n_tokens, "loss": loss})
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode
    return rows
