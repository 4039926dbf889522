# SPDX-License-Identifier: MIT
"""``layer_spectra``: per-sample singular-value statistics of every layer's weight gradients.

The fast method (``fast.py``) runs ONE batched forward/backward for all samples with the
weights frozen (only activations carry grad), captures each selected linear layer's inputs
``X`` and output-gradients ``D`` (``capture.py``), and takes each sample's gradient
spectrum in the backward hook from the small core of thin QR factors (``lowrank.py``),
never forming a per-sample weight gradient unless that is cheaper. The reference
(``reference.py``) is the paper's per-sample backward and SVD, with its own statistics.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
import torch.nn as nn
from jaxtyping import Int
from torch import Tensor

from thoughtgrad.errors import UserError
from thoughtgrad.models.roles import matrix_views
from thoughtgrad.spectra.fast import fast_table
from thoughtgrad.spectra.metrics import STAT_NAMES
from thoughtgrad.spectra.reference import reference_rows
from thoughtgrad.tasks.tokens import IGNORE_INDEX, right_padded_lengths

COLUMNS: tuple[str, ...] = ("sample", "layer", "role", "param", *STAT_NAMES, "n_tokens", "loss")
"""Columns of the table :func:`layer_spectra` returns, in order."""

METHODS: tuple[str, ...] = ("fast", "reference")


def layer_spectra(model: nn.Module, input_ids: Int[Tensor, "B T"], labels: Int[Tensor, "B T"],
                  attention_mask: Int[Tensor, "B T"] | None = None, *,
                  roles: Iterable[str] | None = None, method: str = "fast",
                  loss_reduction: str = "mean", include_fused: bool = False,
                  compute_dtype: torch.dtype | None = None,
                  recompute_layers: bool = False) -> pd.DataFrame:
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

    ``method="fast"`` is exact (see :mod:`~thoughtgrad.spectra.fast`); QR factors (or
    ``D^T X`` where that is cheaper) are taken in float64 for a float64 model, else float32
    (``compute_dtype`` overrides), spectra as float64 Gram eigenvalues.
    ``recompute_layers`` (fast method) recomputes each layer block's forward in the
    backward (activation checkpointing): far less memory, one more forward of time, the
    same numbers.
    ``method="reference"`` is the slow per-sample backward + float64 SVD of each real weight
    gradient; it needs every weight in memory (no offloading device map). The model's
    weights, flags and modes are left as they were. A model placed by a device map works
    as it is (inputs on the device of its token embeddings).
    """
    from thoughtgrad.models.placement import offloaded

    if method not in METHODS:
        raise UserError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "reference" and offloaded(model):
        raise UserError("method reference differentiates the weights themselves, and this "
                        "device map offloads some (cpu / disk); use method fast or a map that "
                        "keeps every block on a GPU")
    if loss_reduction not in ("mean", "sum"):
        raise UserError(f"loss_reduction must be 'mean' or 'sum', got {loss_reduction!r}")
    ids, labels, mask = _prepare(input_ids, labels, attention_mask)
    views = matrix_views(model, roles=roles, include_fused=include_fused)
    if method == "reference":
        rows = reference_rows(model, ids, labels, mask, views, loss_reduction=loss_reduction)
        return pd.DataFrame(rows, columns=list(COLUMNS))
    return fast_table(model, ids, labels, mask, views, list(COLUMNS),
                      loss_reduction=loss_reduction, compute_dtype=compute_dtype,
                      recompute_layers=recompute_layers)


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
    lengths = right_padded_lengths(mask)  # B
    if lengths is None:
        raise UserError("attention_mask must be right padding (ones, then zeros, per row)")
    width = max(int(lengths.max()), 1)
    ids, labels, mask = input_ids[:, :width], labels[:, :width], mask[:, :width]
    labels = labels.masked_fill(mask == 0, IGNORE_INDEX)
    n_tokens = (labels[:, 1:] != IGNORE_INDEX).sum(1)
    for s in torch.nonzero(n_tokens == 0).flatten().tolist():
        raise UserError(f"sample {s}: no response tokens carry loss (all labels are -100 "
                        "after the causal shift), so its gradient is zero")
    return ids, labels, mask
