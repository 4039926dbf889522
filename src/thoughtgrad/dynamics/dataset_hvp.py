# SPDX-License-Identifier: MIT
"""Hessian-vector products of a loss averaged over a data set larger than one batch,
optionally shared among the ranks of a launched job.

PyHessian's "full dataset" mode (``dataloader_hv_product``) runs on one device: for each
batch it rebuilds the gradient graph, takes one HVP, and averages the products. Here the
batches are weighted by their loss-token counts ``w_b``, so the result is the Hessian of
the *one* mean over every loss token of the data set, exactly what one batch holding all
of them would give:

    H v = (1 / W) sum_b w_b H_b v,    W = sum_b w_b,

with ``H_b`` the Hessian of batch b's own mean loss. With ``reduce`` (a sum over ranks,
:func:`thoughtgrad.distributed.sum_tensors`) each rank holds some of the batches, sums its
``w_b H_b v`` and the ranks all-reduce the sums: every rank gets the same ``H v`` and the
eigen-solvers of :mod:`thoughtgrad.dynamics.hessian` run unchanged (and in step) on each.

Memory is one batch's double-backward graph at a time (rebuilt per product, as in
PyHessian), at the price of one extra gradient per batch per product.
:func:`shared_hvp_operator` is the case of one batch split among the ranks (the training
loop's curvature probe): each rank keeps the gradient graph of its part, as
:func:`~thoughtgrad.dynamics.hessian.hvp_operator` does, and no gradient is rebuilt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from thoughtgrad.dynamics.hessian import HVP, Params, hvp_operator, work_dtype

Reduce = Callable[[Sequence[Tensor]], list[Tensor]]
"""A sum of each tensor over the ranks (new tensors out); ``None``: one process."""


def dataset_hvp_operator(batches: Sequence[tuple[Callable[[], Tensor], int]], params: Params,
                         *, reduce: Reduce | None = None) -> HVP:
    """``v -> H v`` for the token-weighted mean loss of ``batches`` (this rank's share).

    Each item is ``(loss_fn, n_tokens)``: ``loss_fn()`` returns the batch's mean loss over
    its ``n_tokens`` loss tokens. A rank with no batch still takes part (it contributes
    zero). Raises ``ValueError`` when there is no loss token on any rank. Results are in
    :func:`~thoughtgrad.dynamics.hessian.work_dtype`, on the parameters' devices.
    """
    params = list(params)
    dt = work_dtype(params)
    local = torch.tensor([float(sum(n for _, n in batches))], dtype=torch.float64)
    total = float((reduce([local]) if reduce is not None else [local])[0].item())
    if total <= 0:
        raise ValueError("the data set has no loss-carrying token")

    def apply(vecs: list[Tensor]) -> list[Tensor]:
        acc = [torch.zeros(p.shape, dtype=dt, device=p.device) for p in params]
        for loss_fn, n_tokens in batches:
            if n_tokens == 0:
                continue
            loss = loss_fn()
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
            live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            if not live:
                continue
            hv = torch.autograd.grad([grads[i] for i in live], [params[i] for i in live],
                                     grad_outputs=[vecs[i].to(params[i].dtype) for i in live],
                                     allow_unused=True)
            for i, h in zip(live, hv, strict=True):
                if h is not None:
                    acc[i] = acc[i] + (n_tokens / total) * h.detach().to(dt)
        return reduce(acc) if reduce is not None else acc

    return apply


def shared_hvp_operator(loss_fn: Callable[[], Tensor] | None, n_tokens: int, params: Params,
                        *, reduce: Reduce) -> HVP:
    """``v -> H v`` for the mean loss over one batch whose rows are split among the ranks.

    This rank's part has ``n_tokens`` loss tokens and ``loss_fn()`` is their mean (``None``
    or ``n_tokens == 0``: no part; the rank still takes part in every product, with
    zero). ``H v = (1 / W) sum_r n_r H_r v`` with ``W`` the summed token counts (one
    reduction when the operator is built) and one reduction of the weighted product per
    call, so every rank gets the product of the whole batch. This rank's gradient graph is
    built once and kept while the operator lives. Raises ``ValueError`` when no rank has a
    loss token. Results are in :func:`~thoughtgrad.dynamics.hessian.work_dtype`.
    """
    params = list(params)
    dt = work_dtype(params)
    own = n_tokens if loss_fn is not None else 0
    total = float(reduce([torch.tensor([float(own)], dtype=torch.float64)])[0].item())
    if total <= 0:
        raise ValueError("the batch has no loss-carrying token")
    part = hvp_operator(loss_fn, params) if own > 0 and loss_fn is not None else None
    weight = own / total

    def apply(vecs: list[Tensor]) -> list[Tensor]:
        if part is None:
            local = [torch.zeros(p.shape, dtype=dt, device=p.device) for p in params]
        else:
            local = [weight * h for h in part(vecs)]
        return reduce(local)

    return apply
