# SPDX-License-Identifier: MIT
"""``layer_spectra``: per-sample singular-value statistics of every layer's weight gradients.

The fast method runs ONE batched forward/backward for all samples with the weights frozen
(only activations carry grad), captures each selected linear layer's inputs ``X`` and
output-gradients ``D`` (``capture.py``), and gets each sample's gradient spectrum from the
small core of thin QR factors (``lowrank.py``), never forming a gradient. Samples are
independent in a causal LM with right padding, so the gradient of the summed per-sample
losses restricted to sample s's rows is exactly the gradient of sample s's own loss.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
import torch.nn as nn
from jaxtyping import Int
from torch import Tensor

from thoughtgrad.errors import UserError
from thoughtgrad.models.roles import MatrixView, matrix_views
from thoughtgrad.spectra.capture import Capture, capturing, forward_logits
from thoughtgrad.spectra.lowrank import core, core_singular_values, r_factor
from thoughtgrad.spectra.metrics import (
    IGNORE_INDEX,
    STAT_NAMES,
    kept_token_cross_entropy,
    spectrum_stats,
)
from thoughtgrad.spectra.reference import reference_rows

COLUMNS: tuple[str, ...] = ("sample", "layer", "role", "param", *STAT_NAMES, "n_tokens", "loss")
"""Columns of the table :func:`layer_spectra` returns, in order."""

METHODS: tuple[str, ...] = ("fast", "reference")

LENGTH_SLACK = 0.1
"""Samples whose lengths differ by less than this fraction share one batched QR/SVD."""


def layer_spectra(model: nn.Module, input_ids: Int[Tensor, "B T"], labels: Int[Tensor, "B T"],
                  attention_mask: Int[Tensor, "B T"] | None = None, *,
                  roles: Iterable[str] | None = None, method: str = "fast",
                  loss_reduction: str = "mean", include_fused: bool = False,
                  compute_dtype: torch.dtype | None = None) -> pd.DataFrame:
    """Singular-value statistics of each sample's loss gradient for every weight matrix.

    Inputs are a right-padded batch: ``attention_mask`` 1 on real tokens (default all),
    ``labels`` ``-100`` where no loss is taken (prompt; padded positions are ignored
    whatever their label). Causal shift as in Hugging Face: logits at t predict labels at
    t+1. Each sample's loss is its cross-entropy (nats) averaged over its own response
    tokens (``loss_reduction="mean"``, the paper's) or summed (``"sum"``, no 1/length
    factor); the gradient is that of the sample's own loss.

    Returns one row per sample x matrix with :data:`COLUMNS`: ``sample`` (row in the batch),
    ``layer`` (0-based), ``role`` (``q k v o gate up down``, or ``qkv``/``gate_up`` for a
    fused stored parameter when ``include_fused``), ``param`` (parameter name; a fused
    one for split roles), the statistics of
    :func:`~thoughtgrad.spectra.metrics.spectrum_stats`, ``n_tokens`` (loss-carrying tokens)
    and ``loss`` (the sample's mean response cross-entropy whatever ``loss_reduction``).

    ``method="fast"`` is exact (see the module docstring); QR factors are taken in float64
    for a float64 model, else float32 (``compute_dtype`` overrides), core SVDs in float64.
    ``method="reference"`` is the slow per-sample backward + float64 SVD of each real weight
    gradient. The model's weights, flags and modes are left as they were.
    """
    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if loss_reduction not in ("mean", "sum"):
        raise UserError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
    ids, labels, mask = _prepare(input_ids, labels, attention_mask)
    views = matrix_views(model, roles=roles, include_fused=include_fused)
    if method == "reference":
        rows = reference_rows(model, ids, labels, mask, views, loss_reduction=loss_reduction)
    else:
        rows = _fast_rows(model, ids, labels, mask, views, loss_reduction, compute_dtype)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _prepare(input_ids: Tensor, labels: Tensor, attention_mask: Tensor | None
             ) -> tuple[Tensor, Tensor, Tensor]:
    """Validate a right-padded batch; drop all-pad columns; ignore labels on padding."""
    if input_ids.dim() != 2:
        raise UserError(f"input_ids must be B x T, got shape {tuple(input_ids.shape)}")
    if labels.shape != input_ids.shape:
        raise UserError(f"labels shape {tuple(labels.shape)} != input_ids shape "
                        f"{tuple(input_ids.shape)}")
    mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
    if mask.shape != input_ids.shape:
        raise UserError(f"attention_mask shape {tuple(mask.shape)} != input_ids shape "
                        f"{tuple(input_ids.shape)}")
    mask = mask.to(torch.long)
    lengths = mask.sum(1)  # B
    positions = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask, (positions[None] < lengths[:, None]).long()):
        raise UserError("attention_mask must be right padding (ones, then zeros, per row)")
    width = max(int(lengths.max()), 1)
    ids, labels, mask = input_ids[:, :width], labels[:, :width], mask[:, :width]
    labels = labels.masked_fill(mask == 0, IGNORE_INDEX)
    n_tokens = (labels[:, 1:] != IGNORE_INDEX).sum(1)
    for s in torch.nonzero(n_tokens == 0).flatten().tolist():
        raise UserError(f"sample {s}: no response tokens carry loss (all labels are -100 "
                        "after the causal shift), so its gradient is zero")
    return ids, labels, mask


def _fast_rows(model: nn.Module, ids: Tensor, labels: Tensor, mask: Tensor,
               views: list[MatrixView], loss_reduction: str,
               compute_dtype: torch.dtype | None) -> list[dict]:
    modules = {v.module: model.get_submodule(v.module) for v in views}
    tok_mask = labels[:, 1:] != IGNORE_INDEX  # B T-1: targets that carry loss
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = tok_mask  # logits positions that predict them
    with capturing(model, modules) as cap:
        logits = forward_logits(model, ids, mask, keep=keep)  # N V
        ce = kept_token_cross_entropy(logits, labels[:, 1:][tok_mask])  # N
        rows_of = torch.nonzero(keep)[:, 0]  # N: sample of each kept position
        ce_sum = torch.zeros(ids.shape[0], dtype=ce.dtype, device=ce.device).index_add(
            0, rows_of, ce)  # B
        n_tokens = tok_mask.sum(1)  # B
        per_sample = ce_sum / n_tokens if loss_reduction == "mean" else ce_sum
        per_sample.sum().backward()
    with torch.no_grad():
        mean_loss = (ce_sum.detach() / n_tokens).tolist()
        stats = _view_stats(cap, modules, views, mask, compute_dtype)
    rows: list[dict] = []
    for s in range(ids.shape[0]):
        for v, st in zip(views, stats, strict=True):
            rows.append({"sample": s, "layer": v.layer, "role": v.role, "param": v.param,
                         **{k: t[s] for k, t in st.items()},
                         "n_tokens": int(n_tokens[s]), "loss": mean_loss[s]})
    return rows


def length_groups(lengths: list[int], *, slack: float = LENGTH_SLACK
                  ) -> list[tuple[list[int], int]]:
    """Samples grouped by length, longest first: ``[(sample indices, group length), ...]``.

    A sample joins the current group while its length is at least ``(1 - slack)`` of the
    group's, so padding costs at most that fraction of each QR (cost ~ T^2) and SVD (~ T^3).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[tuple[list[int], int]] = []
    for i in order:
        if groups and lengths[i] >= (1 - slack) * groups[-1][1]:
            groups[-1][0].append(i)
        else:
            groups.append(([i], lengths[i]))
    return groups


def _view_stats(cap: Capture, modules: dict[str, nn.Module], views: list[MatrixView],
                mask: Tensor, compute_dtype: torch.dtype | None) -> list[dict[str, list]]:
    """Per view, each statistic as a list over samples.

    Samples are processed in length groups (padding cut to the group's length); the R
    factor of an input shared by several views (q, k, v; gate, up; fused splits) is
    computed once per group.
    """
    batch = mask.shape[0]
    groups = length_groups(mask.sum(1).tolist())
    r_inputs: dict[tuple, Tensor] = {}
    out: list[dict[str, list]] = []
    for v in views:
        module = modules[v.module]
        x, d = cap.factors(v.module, module)  # B T' n, B T' m
        calls = len(cap.inputs[v.module])
        dtype = compute_dtype or (torch.float64 if x.dtype == torch.float64 else torch.float32)
        if v.rows is not None:
            d = d[..., v.rows.to(d.device)]  # B T' m_role
        full_dim = min(x.shape[-1], d.shape[-1])
        stats: dict[str, list] = {}
        for g, (members, length) in enumerate(groups):
            idx = torch.tensor(members, device=x.device)
            width = x.shape[1] if calls > 1 else length  # looped modules: keep all calls
            keep = mask[idx].repeat(1, calls)[:, :width].to(dtype)[..., None]  # G W 1
            key = tuple((t.data_ptr(), tuple(t.shape)) for t in cap.inputs[v.module]) + (dtype, g)
            if key not in r_inputs:
                r_inputs[key] = r_factor(x[idx, :width].to(dtype) * keep)  # G kx W
            r_d = r_factor(d[idx, :width].to(dtype) * keep)  # G kd W
            sv = core_singular_values(core(r_d, r_inputs[key]))  # G k
            for name, t in spectrum_stats(sv, full_dim).items():
                stats.setdefault(name, [None] * batch)
                for j, value in zip(members, t.tolist(), strict=True):
                    stats[name][j] = value
        out.append(stats)
    return out
