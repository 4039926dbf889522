# SPDX-License-Identifier: MIT
"""Statistics of a gradient's singular values and the per-sample loss they come from.

Pure functions, batched over leading dims. Singular values arrive descending, possibly
fewer than min(m, n) of them (the rest are known to be zero, see ``lowrank.py``).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

RANK_RTOL = 1e-6
"""Numerical rank counts singular values above ``RANK_RTOL * sigma_max``. fp32 QR and SVD
resolve singular values to about 1e-7 of sigma_max, so smaller ones are noise."""

STAT_NAMES: tuple[str, ...] = ("nuclear", "sigma_max", "sigma_min", "ratio", "frobenius",
                               "effective_rank", "rank")


def spectrum_stats(s: Float[Tensor, "*S k"], full_dim: int) -> dict[str, Tensor]:
    """Statistics of a matrix with singular values ``s`` (descending) and min(m, n) = full_dim.

    ``nuclear`` = sum sigma; ``sigma_max``; ``sigma_min`` = the smallest of the full_dim
    singular values (0 when k < full_dim); ``ratio`` = sigma_max / nuclear; ``frobenius`` =
    sqrt(sum sigma^2); ``effective_rank`` = exp(-sum p log p) with p = sigma / nuclear (0 log 0
    = 0); ``rank`` = #{sigma > RANK_RTOL sigma_max}. A zero matrix has ratio and effective
    rank NaN and rank 0. Each value has shape ``*S``.
    """
    k = s.shape[-1]
    if k > full_dim:
        raise ValueError(f"{k} singular values for a matrix with min(m, n) = {full_dim}")
    nuclear = s.sum(-1)
    sigma_max = s[..., 0]
    sigma_min = s[..., -1] if k == full_dim else torch.zeros_like(sigma_max)
    p = s / nuclear[..., None]  # *S k
    plogp = torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))
    return {
        "nuclear": nuclear,
        "sigma_max": sigma_max,
        "sigma_min": sigma_min,
        "ratio": sigma_max / nuclear,
        "frobenius": torch.linalg.vector_norm(s, dim=-1),
        "effective_rank": torch.exp(-plogp.sum(-1)),
        "rank": (s > RANK_RTOL * sigma_max[..., None]).sum(-1),
    }


CE_ROWS = 1024
"""Rows of the logits a cross-entropy temporary spans at once (``CE_ROWS`` x V floats)."""


class _KeptTokenCE(torch.autograd.Function):
    """Cross-entropy that keeps only the logits and one log-sum-exp per row for its
    backward, and whose backward writes ``softmax - onehot`` into one new N x V buffer.

    ``F.cross_entropy`` keeps the log-softmax (a second N x V) and its backward makes two
    more, so at a vocabulary of 49k and 4k loss tokens it holds about 3 GB where this holds
    the logits and their gradient (1.6 GB). Temporaries of the forward span
    :data:`CE_ROWS` rows.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, logits: Tensor, targets: Tensor
                ) -> Tensor:
        lse = torch.cat([torch.logsumexp(chunk, dim=-1)
                         for chunk in logits.split(CE_ROWS)]) if len(logits) \
            else logits.new_zeros(0)  # N
        ce = lse - logits.gather(-1, targets[:, None]).squeeze(-1)  # N
        ctx.save_for_backward(logits, lse, targets)
        return ce

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor
                 ) -> tuple[Tensor, None]:
        logits, lse, targets = ctx.saved_tensors
        out = torch.empty_like(logits)  # N V
        for rows, src, s in zip(out.split(CE_ROWS), logits.split(CE_ROWS), lse.split(CE_ROWS),
                                strict=True):
            torch.sub(src, s[:, None], out=rows).exp_()  # softmax
        out.mul_(grad[:, None])
        out.scatter_add_(-1, targets[:, None], -grad[:, None])  # - onehot
        return out, None


def kept_token_cross_entropy(logits: Float[Tensor, "N V"], targets: Int[Tensor, " N"]
                             ) -> Float[Tensor, " N"]:
    """Cross-entropy in nats of already-selected (shifted, loss-carrying) positions.

    Half-precision logits are upcast to float32 first. Memory-lean (:class:`_KeptTokenCE`):
    the backward holds the logits and their gradient, nothing else of size N x V.
    """
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()
    return _KeptTokenCE.apply(logits, targets)


def sample_losses(token_ce: Float[Tensor, "B T"], mask: Tensor, reduction: str
                  ) -> Float[Tensor, " B"]:
    """Each sample's loss: ``mean`` over its loss-carrying tokens (the paper's) or ``sum``.

    A sample without loss-carrying tokens gets 0 under ``sum`` and NaN under ``mean``.
    """
    total = token_ce.sum(-1)
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / mask.sum(-1)
    raise ValueError(f"loss_reduction must be 'mean' or 'sum', got {reduction!r}")
