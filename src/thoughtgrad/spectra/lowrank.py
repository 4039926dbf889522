# SPDX-License-Identifier: MIT
"""Exact singular values of a per-sample weight gradient ``G = D^T X`` without forming it.

For a linear layer over one sample's ``T`` token positions, ``X`` (T x n) holds the layer
inputs and ``D`` (T x m) the loss gradients at its outputs, so the weight gradient is
``G = D^T X`` (m x n, rank <= T). With thin QR factors ``X^T = Q_x R_x`` and
``D^T = Q_d R_d`` (``Q`` with orthonormal columns, ``R`` of at most T rows),
``G = Q_d (R_d R_x^T) Q_x^T``, so ``G`` has the singular values of the small core
``C = R_d R_x^T`` (min(m, T) x min(n, T)) plus zeros up to min(m, n). Cost
O(T^2 (m + n) + T^3) instead of O(m n min(m, n)). Zero rows (padding) change neither ``G``
nor the result.

Everything here is pure: tensors in, tensors out, batched over any leading dims ``*S``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor


def r_factor(a: Float[Tensor, "*S T n"]) -> Float[Tensor, "*S k T"]:
    """The R factor of the thin QR of ``a^T`` (k = min(n, T)); ``a^T = Q R``, Q not formed."""
    return torch.linalg.qr(a.mT, mode="r").R  # *S k T


def core(r_d: Float[Tensor, "*S kd T"], r_x: Float[Tensor, "*S kx T"]
         ) -> Float[Tensor, "*S kd kx"]:
    """The core ``R_d R_x^T`` whose singular values are those of ``D^T X``."""
    return r_d @ r_x.mT  # *S kd kx


def core_singular_values(c: Float[Tensor, "*S a b"], *,
                         dtype: torch.dtype = torch.float64) -> Float[Tensor, "*S k"]:
    """Singular values of the core in ``dtype``, descending; k = min(a, b)."""
    return torch.linalg.svdvals(c.to(dtype))


def gradient_singular_values(d: Float[Tensor, "*S T m"], x: Float[Tensor, "*S T n"], *,
                             dtype: torch.dtype = torch.float64) -> Float[Tensor, "*S k"]:
    """The leading k = min(m, n, T) singular values of ``G = d^T x``, descending.

    QR factors are taken in the inputs' dtype (use float32 or float64 inputs), the core's
    SVD in ``dtype``. The remaining min(m, n) - k singular values of ``G`` are zero.
    """
    return core_singular_values(core(r_factor(d), r_factor(x)), dtype=dtype)
