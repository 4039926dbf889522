# SPDX-License-Identifier: MIT
"""Exact singular values of a per-sample weight gradient ``G = D^T X`` without forming it.

For a linear layer over one sample's ``T`` token positions, ``X`` (T x n) holds the layer
inputs and ``D`` (T x m) the loss gradients at its outputs, so the weight gradient is
``G = D^T X`` (m x n, rank <= T). With thin QR factors ``X^T = Q_x R_x`` and
``D^T = Q_d R_d`` (``Q`` with orthonormal columns, ``R`` of at most T rows),
``G = Q_d (R_d R_x^T) Q_x^T``, so ``G`` has the singular values of the small core
``C = R_d R_x^T`` (min(m, T) x min(n, T)) plus zeros up to min(m, n). Cost
O(T^2 (m + n) + T^3) instead of O(m n min(m, n)). Zero rows (padding) change neither ``G``
nor the result. When ``T >= min(m, n)`` the core is no smaller than ``G`` itself, and
forming ``G`` (one GEMM, ``2 m n T`` flops) is cheaper: :func:`direct_is_cheaper` picks the
route from the shapes.

Singular values come from the symmetric eigenvalues of the smaller Gram matrix of the core
(or of ``G``), in float64 (:func:`singular_values`): about 2.5x cheaper than an SVD of the
same matrix on a CPU. Squaring costs relative accuracy only on singular values far below
``sigma_max``: each ``sigma_i`` is exact to about ``sqrt(eps_64 k) sigma_max`` (~1e-7
sigma_max at k = 500) absolutely, far inside both the fp32 QR's own error (~1e-7
``|D| |X|``) and the statistics' needs (``RANK_RTOL`` = 1e-6 of sigma_max; the 1e-4
tolerance of the exactness tests). In float32 the same squaring would blur everything below
~3e-4 sigma_max, which is why the Gram and its eigenvalues are never float32.

Everything here is pure: tensors in, tensors out, batched over any leading dims ``*S``.
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

QR_COST = 1.7
"""Cost of one Householder-QR flop in units of a float32 GEMM flop (measured on a 2-core
AVX-512 CPU with MKL, sizes 200-1500): blocked QR runs at ~60 % of GEMM speed."""

GRAM_COST = 2.0
"""Cost of one float64 GEMM flop in float32 GEMM flops."""

EIG_COST = 11.0
"""Cost of a k x k float64 ``eigvalsh`` in float32 GEMM flops per k^3 (its tridiagonal
reduction is half matrix-vector work, memory-bound)."""


def r_factor(a: Float[Tensor, "*S T n"]) -> Float[Tensor, "*S k T"]:
    """The R factor of the thin QR of ``a^T`` (k = min(n, T)); ``a^T = Q R``, Q not formed."""
    return torch.linalg.qr(a.mT, mode="r").R  # *S k T


def core(r_d: Float[Tensor, "*S kd T"], r_x: Float[Tensor, "*S kx T"]
         ) -> Float[Tensor, "*S kd kx"]:
    """The core ``R_d R_x^T`` whose singular values are those of ``D^T X``."""
    return r_d @ r_x.mT  # *S kd kx


def singular_values(a: Float[Tensor, "*S p q"], *, dtype: torch.dtype = torch.float64
                    ) -> Float[Tensor, "*S k"]:
    """Singular values of ``a`` (k = min(p, q)), descending, from ``eigvalsh`` of its smaller
    Gram matrix in ``dtype`` (negative round-off clipped to 0). See the module docstring
    for the accuracy: use float64."""
    a = a.to(dtype)
    gram = a @ a.mT if a.shape[-2] <= a.shape[-1] else a.mT @ a  # *S k k
    return torch.linalg.eigvalsh(gram).clamp_min(0).sqrt().flip(-1)  # *S k


def direct_is_cheaper(t: int, m: int, n: int, *, shared_x: bool = False) -> bool:
    """Whether forming ``G = D^T X`` (m x n, T tokens) and taking its spectrum costs less
    than the QR route, by the flop model of :data:`QR_COST`, :data:`GRAM_COST`,
    :data:`EIG_COST`. ``shared_x``: the R factor of ``X`` is already paid for (q, k, v)."""

    def qr(rows: int) -> float:  # R factor of a rows x t matrix's transpose, t tokens
        k = min(rows, t)
        return QR_COST * (2 * k * k * max(rows, t) - 2 / 3 * k ** 3)

    def spectrum(p: int, q: int) -> float:  # Gram of the smaller side, then eigvalsh
        k = min(p, q)
        return GRAM_COST * 2 * k * k * max(p, q) + EIG_COST * k ** 3

    kd, kx = min(m, t), min(n, t)
    via_core = qr(m) + (0 if shared_x else qr(n)) + 2 * kd * t * kx + spectrum(kd, kx)
    direct = 2 * m * n * t + spectrum(m, n)
    return direct < via_core


def gradient_singular_values(d: Float[Tensor, "*S T m"], x: Float[Tensor, "*S T n"], *,
                             dtype: torch.dtype = torch.float64) -> Float[Tensor, "*S k"]:
    """The leading k = min(m, n, T) singular values of ``G = d^T x``, descending.

    ``G`` or the QR core is formed in the inputs' dtype (use float32 or float64 inputs),
    whichever :func:`direct_is_cheaper` says; the spectrum in ``dtype``. The remaining
    min(m, n) - k singular values of ``G`` are zero.
    """
    t, m, n = d.shape[-2], d.shape[-1], x.shape[-1]
    if direct_is_cheaper(t, m, n):
        return singular_values(d.mT @ x, dtype=dtype)[..., :min(m, n, t)]  # *S k
    return singular_values(core(r_factor(d), r_factor(x)), dtype=dtype)
