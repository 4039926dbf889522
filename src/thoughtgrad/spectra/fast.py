# SPDX-License-Identifier: MIT
"""The fast method: one batched forward/backward, each matrix's statistics taken in the hook.

The weights are frozen (only activations carry grad). Each selected linear layer's inputs
``X`` are kept from the forward; when the backward delivers its output-gradients ``D``
(:func:`~thoughtgrad.spectra.capture.capturing` with a consumer), every view of that layer
gets its per-sample spectrum at once (:mod:`~thoughtgrad.spectra.lowrank`: the QR core or,
when the shapes make it cheaper, ``D^T X`` itself; float64 Gram eigenvalues) and ``X`` and
``D`` are dropped. Peak memory is the model's own forward/backward plus the not-yet-reached
layers' ``X``, never all layers' ``D``; with ``recompute_layers`` it is the layer blocks'
inputs plus one block's activations.

Each module's statistics are computed on the device of its ``X`` and ``D`` (its own device
under a device map, see :mod:`~thoughtgrad.spectra.capture`) in float32, or float64 for a
float64 model: bf16 / fp16 factors are upcast before any QR, core or Gram is formed, and
the Gram eigenvalues are float64. Only the per-sample statistics travel, to the CPU. The
loss is taken on the device of the logits, with the labels moved there.

Samples are independent in a causal LM with right padding, so the gradient of the summed
per-sample losses restricted to sample s's rows is exactly the gradient of sample s's own
loss. Rows past a sample's last loss-predicting position have ``D = 0`` exactly (nothing
there reaches a loss), so each sample is cut there; samples of similar cut length share
one batched QR / eigenproblem (:func:`length_groups`).

Profiler labels (``torch.profiler.record_function``): ``spectra.forward``,
``spectra.backward``, ``spectra.qr``, ``spectra.core``, ``spectra.direct``,
``spectra.eig`` (Gram and eigenvalues), ``spectra.stats``, ``spectra.table``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from torch import Tensor
from torch.profiler import record_function

from thoughtgrad.models.roles import MatrixView
from thoughtgrad.spectra.capture import Factors, capturing, forward_logits
from thoughtgrad.spectra.lowrank import core, direct_is_cheaper, r_factor, singular_values
from thoughtgrad.spectra.metrics import (
    STAT_NAMES,
    kept_token_cross_entropy,
    spectrum_stats,
)
from thoughtgrad.tasks.tokens import IGNORE_INDEX

LENGTH_SLACK = 0.1
"""Samples whose cut lengths differ by less than this fraction share one batched QR/eig."""


def length_groups(lengths: list[int], *, slack: float = LENGTH_SLACK
                  ) -> list[tuple[list[int], int]]:
    """Samples grouped by length, longest first: ``[(sample indices, group length), ...]``.

    A sample joins the current group while its length is at least ``(1 - slack)`` of the
    group's, so padding costs at most that fraction of each QR (cost ~ T^2) and eig (~ T^3).
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: list[tuple[list[int], int]] = []
    for i in order:
        if groups and lengths[i] >= (1 - slack) * groups[-1][1]:
            groups[-1][0].append(i)
        else:
            groups.append(([i], lengths[i]))
    return groups


class _Statistics:
    """The capture's consumer: statistics of every view of a module, per sample.

    ``results[view index][stat]`` is a float64 tensor over samples. The R factor of an
    input shared by several modules (q, k, v; gate, up) is computed once per length group
    and dropped when its last consumer is done.
    """

    def __init__(self, views: list[MatrixView], cut: list[int],
                 compute_dtype: torch.dtype | None) -> None:
        self.views_of: dict[str, list[tuple[int, MatrixView]]] = {}
        for i, v in enumerate(views):
            self.views_of.setdefault(v.module, []).append((i, v))
        self.groups = length_groups(cut)
        self.batch = len(cut)
        self.compute_dtype = compute_dtype
        self.results: list[dict[str, Tensor] | None] = [None] * len(views)
        self.users: dict[tuple, int] = {}  # input key -> modules still to consume it
        self.r_inputs: dict[tuple, Tensor] = {}

    def count_users(self, inputs: dict[str, list[Tensor]]) -> None:
        """After the forward: how many modules read each captured input."""
        for xs in inputs.values():
            key = _input_key(xs)
            self.users[key] = self.users.get(key, 0) + 1

    def __call__(self, name: str, factors: Factors, inputs: list[Tensor]) -> None:
        key = _input_key(inputs)
        x, d = factors  # B T' n, B T' m
        calls = len(inputs)
        dtype = self.compute_dtype or (torch.float64 if x.dtype == torch.float64
                                       else torch.float32)
        shared = self.users.get(key, 1) > 1
        with torch.no_grad():
            for g, (members, width) in enumerate(self.groups):
                xg = _rows(x, members, width, calls, self.batch).to(dtype)  # G W n
                dg = _rows(d, members, width, calls, self.batch).to(dtype)  # G W m
                for i, v in self.views_of[name]:
                    dv = dg if v.rows is None else dg[..., v.rows.to(dg.device)]  # G W m_v
                    sv = self._spectrum(dv, xg, (key, dtype, g), shared)  # G k
                    with record_function("spectra.stats"):
                        stats = spectrum_stats(sv, min(dv.shape[-1], xg.shape[-1]))
                        self._store(i, members, stats)
            self.users[key] = self.users.get(key, 1) - 1
            if self.users[key] <= 0:
                for g in range(len(self.groups)):
                    self.r_inputs.pop((key, dtype, g), None)

    def _spectrum(self, d: Tensor, x: Tensor, rkey: tuple, shared: bool) -> Tensor:
        t, m, n = d.shape[-2], d.shape[-1], x.shape[-1]
        if direct_is_cheaper(t, m, n, shared_x=shared and rkey in self.r_inputs):
            with record_function("spectra.direct"):
                gmat = d.mT @ x  # G m n
            with record_function("spectra.eig"):
                return singular_values(gmat)[..., :min(m, n, t)]  # G k
        with record_function("spectra.qr"):
            if rkey not in self.r_inputs:
                self.r_inputs[rkey] = r_factor(x)  # G kx W
            r_d = r_factor(d)  # G kd W
        with record_function("spectra.core"):
            c = core(r_d, self.r_inputs[rkey])  # G kd kx
        with record_function("spectra.eig"):
            return singular_values(c)  # G k

    def _store(self, i: int, members: list[int], stats: dict[str, Tensor]) -> None:
        if self.results[i] is None:
            self.results[i] = {k: torch.zeros(self.batch, dtype=torch.float64)
                               for k in stats}
        idx = torch.tensor(members)
        for k, t in stats.items():
            self.results[i][k][idx] = t.detach().to("cpu", torch.float64)


def _input_key(inputs: list[Tensor]) -> tuple:
    """Identity of a module's captured inputs (storage and layout of every call)."""
    return tuple((t.device, t.data_ptr(), tuple(t.shape), t.stride()) for t in inputs)


def _rows(a: Tensor, members: list[int], width: int, calls: int, batch: int) -> Tensor:
    """Rows ``members`` of ``a`` (B, calls*T, f), each call cut to its first ``width``."""
    if members != list(range(batch)):
        a = a[torch.tensor(members, device=a.device)]
    if calls == 1:
        return a[:, :width]
    per_call = a.shape[1] // calls
    return a.unflatten(1, (calls, per_call))[:, :, :width].flatten(1, 2)  # G calls*W f


def fast_table(model: nn.Module, ids: Tensor, labels: Tensor, mask: Tensor,
               views: list[MatrixView], columns: list[str], *, loss_reduction: str,
               compute_dtype: torch.dtype | None, recompute_layers: bool = False
               ) -> pd.DataFrame:
    """The table of :func:`thoughtgrad.spectra.api.layer_spectra` by the fast method;
    ``recompute_layers``: activation checkpointing of the layer blocks
    (:func:`~thoughtgrad.spectra.capture.capturing`)."""
    modules = {v.module: model.get_submodule(v.module) for v in views}
    tok_mask = labels[:, 1:] != IGNORE_INDEX  # B T-1: targets that carry loss
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = tok_mask  # logits positions that predict them
    positions = torch.arange(1, keep.shape[1] + 1, device=keep.device)
    cut = (keep * positions).amax(1).tolist()  # B: D is zero past the last kept position
    consumer = _Statistics(views, cut, compute_dtype)
    with capturing(model, modules, consumer=consumer, recompute_layers=recompute_layers,
                   on_recomputed=consumer.count_users) as cap:
        with record_function("spectra.forward"):
            logits = forward_logits(model, ids, mask, keep=keep)  # N V
            labels, tok_mask, keep = (t.to(logits.device) for t in (labels, tok_mask, keep))
            ce = kept_token_cross_entropy(logits, labels[:, 1:][tok_mask])  # N
            rows_of = torch.nonzero(keep)[:, 0]  # N: sample of each kept position
            ce_sum = torch.zeros(ids.shape[0], dtype=ce.dtype, device=ce.device).index_add(
                0, rows_of, ce)  # B
            n_tokens = tok_mask.sum(1)  # B
            per_sample = ce_sum / n_tokens if loss_reduction == "mean" else ce_sum
        consumer.count_users({n: xs for n, xs in cap.inputs.items()
                              if n not in cap.recomputed})
        with record_function("spectra.backward"):
            per_sample.sum().backward()
            cap.flush()
    with record_function("spectra.table"):
        return _table(views, consumer.results, n_tokens.cpu(), (ce_sum.detach() / n_tokens),
                      columns)


def _table(views: list[MatrixView], results: list[dict[str, Tensor] | None], n_tokens: Tensor,
           mean_loss: Tensor, columns: list[str]) -> pd.DataFrame:
    """One row per sample x view (sample-major, views in order), built column-wise."""
    batch, n_views = len(n_tokens), len(views)
    missing = [v.param for v, r in zip(views, results, strict=True) if r is None]
    if missing:
        raise RuntimeError(f"no statistics for {', '.join(missing)}")  # pragma: no cover
    cols: dict[str, object] = {
        "sample": np.repeat(np.arange(batch), n_views),
        "layer": np.tile([v.layer for v in views], batch),
        "role": np.tile(np.array([v.role for v in views], dtype=object), batch),
        "param": np.tile(np.array([v.param for v in views], dtype=object), batch),
    }
    for name in STAT_NAMES:
        values = torch.stack([r[name] for r in results], 1).flatten().numpy()  # B*V
        cols[name] = values.astype(np.int64) if name == "rank" else values
    cols["n_tokens"] = np.repeat(n_tokens.numpy().astype(np.int64), n_views)
    cols["loss"] = np.repeat(mean_loss.detach().to("cpu", torch.float64).numpy(), n_views)
    return pd.DataFrame(cols, columns=columns)
