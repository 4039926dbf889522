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
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from thoughtgrad.dynamics.hessian import HVP, Params, work_dtype

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
