# SPDX-License-Identifier: MIT
"""Curvature of a loss from Hessian-vector products: power iteration, Lanczos, Hutchinson.

Everything here is pure: a ``loss_fn()`` returning a scalar and a list of parameter
tensors go in, Python floats come out. Inputs are never mutated; parameter-list algebra
(:func:`group_dot`, :func:`group_axpy`, :func:`normalize`, :func:`orthogonalize`) returns
new tensors, so the iterations below read like the maths (in the spirit of PyHessian,
Yao et al. 2020, without its in-place ``group_add``).

The Hessian is never formed. One Hessian-vector product (HVP) is a second backward pass
through the gradient graph (Pearlmutter's trick, "double backward"): the gradient is
computed once with ``create_graph=True`` and each HVP differentiates ``<grad, v>``.
:func:`hvp_forward_over_reverse` is the ``torch.func`` alternative (``jvp`` of ``grad``).

"Largest" means largest *algebraic* eigenvalue (most positive), the sharpness of the
loss surface, for both methods. Lanczos converges to the algebraic extremes. Plain power
iteration converges to the eigenvalue of largest *magnitude*; near a minimum the Hessian is
nearly positive semi-definite and the two agree, but at a saddle with a dominant negative
direction it would return that negative value. :func:`power_iteration` therefore checks the
sign of every dominant eigenvalue it finds and, when it is negative, runs again on the
shifted operator ``H - mu I`` (positive semi-definite on the remaining subspace, so its
dominant eigenvalue is ``lambda_max - mu``): the result is algebraic for both methods.

Iterations run in fp32 at least (fp64 when the parameters are fp64); HVPs run in the
parameters' dtype. Scalars are accumulated in fp64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

EPS_NORM = 1e-12
"""A vector whose norm is below this is treated as zero (Lanczos breakdown, deflation)."""

METHODS = ("lanczos", "power")

Params = Sequence[Tensor]
HVP = Callable[[list[Tensor]], list[Tensor]]


# -- parameter-list algebra (pure: new tensors out, inputs untouched) ------------------------
def group_dot(xs: Params, ys: Params) -> float:
    """Sum over the list of ``<x_i, y_i>``, accumulated in fp64. The parameters may sit on
    several devices (a device map): each term is moved to the first one's device before
    the sum, so there is one synchronisation per product, not one per parameter."""
    if not xs:
        return 0.0
    dev = xs[0].device
    terms = [(x.double() * y.double()).sum().to(dev) for x, y in zip(xs, ys, strict=True)]
    return float(torch.stack(terms).sum())


def group_norm(xs: Params) -> float:
    """Euclidean norm of the concatenation of the list."""
    return math.sqrt(max(group_dot(xs, xs), 0.0))


def group_axpy(alpha: float, xs: Params, ys: Params) -> list[Tensor]:
    """``alpha * x + y`` element-wise over the lists (new tensors)."""
    return [y + alpha * x for x, y in zip(xs, ys, strict=True)]


def group_scale(alpha: float, xs: Params) -> list[Tensor]:
    """``alpha * x`` for every tensor of the list (new tensors)."""
    return [alpha * x for x in xs]


def normalize(xs: Params) -> list[Tensor]:
    """The list divided by its norm (a zero list is returned unchanged, as copies)."""
    n = group_norm(xs)
    return [x.clone() for x in xs] if n < EPS_NORM else group_scale(1.0 / n, xs)


def orthogonalize(xs: Params, basis: Sequence[Params]) -> list[Tensor]:
    """``xs`` minus its projections on the orthonormal ``basis`` (classical Gram-Schmidt,
    applied twice for numerical orthogonality: "twice is enough")."""
    out = [x.clone() for x in xs]
    for _ in range(2):
        for b in basis:
            out = group_axpy(-group_dot(b, out), b, out)
    return out


def work_dtype(params: Params) -> torch.dtype:
    """fp64 when the parameters are fp64, else fp32 (never bf16/fp16 for the iterations)."""
    return torch.float64 if params[0].dtype == torch.float64 else torch.float32


def random_vectors(params: Params, *, generator: torch.Generator,
                   kind: str = "gaussian") -> list[Tensor]:
    """A random list shaped like ``params`` in :func:`work_dtype`, on their devices.

    ``kind``: ``gaussian`` (N(0, 1) entries) or ``rademacher`` (+-1 with equal probability).
    Drawn on the CPU from ``generator`` so results do not depend on the device.
    """
    dt = work_dtype(params)
    out = []
    for p in params:
        if kind == "rademacher":
            v = torch.randint(0, 2, p.shape, generator=generator).to(dt) * 2 - 1
        elif kind == "gaussian":
            v = torch.randn(p.shape, generator=generator, dtype=dt)
        else:
            raise ValueError(f"unknown random vector kind {kind!r}")
        out.append(v.to(p.device))
    return out


# -- Hessian-vector products -----------------------------------------------------------------
def hvp_operator(loss_fn: Callable[[], Tensor], params: Params) -> HVP:
    """An HVP closure over one gradient graph: ``v -> H v`` with H the Hessian of
    ``loss_fn()`` with respect to ``params``.

    ``loss_fn`` is called once; its gradient is built with ``create_graph=True`` and kept
    (the graph stays in memory while the closure lives), and each call differentiates
    ``<grad, v>`` once more. Results are returned in :func:`work_dtype`.
    """
    params = list(params)
    loss = loss_fn()
    if loss.dim() != 0:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)]
    live = [i for i, g in enumerate(grads) if g.requires_grad]
    dt = work_dtype(params)

    def apply(vecs: list[Tensor]) -> list[Tensor]:
        out = [torch.zeros(p.shape, dtype=dt, device=p.device) for p in params]
        if not live:
            return out
        hv = torch.autograd.grad([grads[i] for i in live], [params[i] for i in live],
                                 grad_outputs=[vecs[i].to(params[i].dtype) for i in live],
                                 retain_graph=True, allow_unused=True)
        for i, h in zip(live, hv, strict=True):
            if h is not None:
                out[i] = h.detach().to(dt)
        return out

    return apply


def hvp(loss_fn: Callable[[], Tensor], params: Params, vecs: Params) -> list[Tensor]:
    """One Hessian-vector product ``H v`` by double backward (see :func:`hvp_operator`)."""
    return hvp_operator(loss_fn, params)(list(vecs))


def hvp_forward_over_reverse(loss_of: Callable[[tuple[Tensor, ...]], Tensor], params: Params,
                             vecs: Params) -> list[Tensor]:
    """``H v`` by forward-mode over reverse-mode (``torch.func.jvp`` of ``torch.func.grad``).

    ``loss_of(params_tuple)`` must compute the loss *functionally* from the tensors it is
    given (e.g. with ``torch.func.functional_call``). Usually cheaper in memory than double
    backward; not every op has a forward-mode derivative (then torch raises).
    """
    primals = tuple(p.detach() for p in params)
    tangents = tuple(v.to(p.dtype) for v, p in zip(vecs, primals, strict=True))
    _, out = torch.func.jvp(torch.func.grad(loss_of), (primals,), (tangents,))
    return [o.detach() for o in out]


# -- eigenvalues -----------------------------------------------------------------------------
@dataclass(frozen=True)
class EigenResult:
    """Top eigenvalues of a Hessian and what they cost.

    ``eigenvalues``: the k largest algebraic eigenvalues, Python floats, descending.
    ``hvps``: Hessian-vector products used. ``iterations``: power steps summed over the k
    deflated runs (shifted re-runs included), or the Lanczos basis size. ``converged``:
    whether the stopping rule was met before ``max_iter``.
    """

    eigenvalues: list[float]
    hvps: int
    iterations: int
    converged: bool
    method: str


def _check(k: int, tol: float, max_iter: int, method: str, n: int) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(f"k={k} exceeds the number of parameters {n}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter}")


def _power_run(op: HVP, v: list[Tensor], found: Sequence[Params], *, shift: float, tol: float,
               max_iter: int) -> tuple[float, list[Tensor], int, bool]:
    """Power iteration on ``H - shift I`` restricted to the complement of ``found``.

    Returns the Rayleigh quotient of ``H - shift I`` at the last vector, that vector, the
    HVPs used and whether ``|lambda - lambda_prev| < tol * |lambda_prev|`` was met.
    """
    eig, steps = math.nan, 0
    for _ in range(max_iter):
        hv = op(v)
        if shift:
            hv = group_axpy(-shift, v, hv)
        hv = orthogonalize(hv, found)
        steps += 1
        new = group_dot(hv, v)
        v = normalize(hv)
        if math.isfinite(eig) and abs(new - eig) < tol * (abs(eig) + EPS_NORM):
            return new, v, steps, True
        eig = new
    return eig, v, steps, False


def power_iteration(op: HVP, params: Params, *, k: int = 1, tol: float = 1e-4,
                    max_iter: int = 100, seed: int = 0) -> EigenResult:
    """Power iteration with deflation (PyHessian's ``eigenvalues``), returning the k largest
    *algebraic* eigenvalues.

    For each of the k eigenvalues: start from a seeded Gaussian vector, orthogonalize
    against the eigenvectors already found, ``v <- H v / ||H v||``, Rayleigh quotient
    ``lambda = <v, H v>``; stop when ``|lambda - lambda_prev| < tol * |lambda_prev|`` or after
    ``max_iter`` steps. That finds the dominant (largest-magnitude) eigenvalue ``mu`` of the
    remaining subspace. If ``mu >= 0`` it is also the largest algebraic one there (every
    other eigenvalue has ``|lambda| <= mu``). If ``mu < 0``, the run is repeated on ``H - mu I``,
    whose eigenvalues ``lambda - mu`` are all ``>= 0`` on that subspace, so its dominant one is
    ``lambda_max - mu``; ``mu`` is added back. ``max_iter`` caps each run; ``converged`` needs
    every run to meet the stopping rule.
    """
    n = sum(p.numel() for p in params)
    _check(k, tol, max_iter, "power", n)
    gen = torch.Generator().manual_seed(seed)
    found: list[list[Tensor]] = []
    values: list[float] = []
    hvps = 0
    all_converged = True
    for _ in range(k):
        start = normalize(orthogonalize(random_vectors(params, generator=gen), found))
        eig, v, steps, converged = _power_run(op, start, found, shift=0.0, tol=tol,
                                              max_iter=max_iter)
        hvps += steps
        if math.isfinite(eig) and eig < 0:
            shifted, v, steps, converged_shift = _power_run(op, start, found, shift=eig,
                                                            tol=tol, max_iter=max_iter)
            hvps += steps
            eig = shifted + eig
            converged = converged and converged_shift
        all_converged &= converged
        values.append(eig)
        found.append(v)
    order = sorted(values, reverse=True)
    return EigenResult(order, hvps, hvps, all_converged, "power")


def lanczos(op: HVP, params: Params, *, k: int = 1, tol: float = 1e-4, max_iter: int = 100,
            seed: int = 0) -> EigenResult:
    """Lanczos with full reorthogonalization on an HVP operator.

    Builds an orthonormal Krylov basis ``v_0 .. v_m`` of H from a seeded Gaussian start;
    each step costs one HVP, ``alpha_j = <v_j, H v_j>``, the residual is orthogonalized
    against the whole basis (twice) and ``beta_j`` is its norm. The Ritz values are the
    eigenvalues of the symmetric tridiagonal ``T_m`` (``torch.linalg.eigvalsh`` in fp64).
    Stops when each of the top-k Ritz values changes by less than ``tol`` relative to
    itself between consecutive steps, when the Krylov space is invariant (``beta <
    EPS_NORM``, the Ritz values are then exact), or after ``max_iter`` steps (or the
    number of parameters, whichever is smaller).
    """
    n = sum(p.numel() for p in params)
    _check(k, tol, max_iter, "lanczos", n)
    gen = torch.Generator().manual_seed(seed)
    steps = min(max_iter, n)
    basis: list[list[Tensor]] = [normalize(random_vectors(params, generator=gen))]
    alphas: list[float] = []
    betas: list[float] = []
    prev: list[float] | None = None
    top: list[float] = []
    converged = False
    for j in range(steps):
        w = op(basis[j])
        alpha = group_dot(w, basis[j])
        alphas.append(alpha)
        w = orthogonalize(w, basis)  # removes alpha v_j and beta v_{j-1} as well
        beta = group_norm(w)
        tri = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tri = tri + torch.diag(off, 1) + torch.diag(off, -1)
        ritz = torch.linalg.eigvalsh(tri).flip(0).tolist()  # descending
        top = ritz[:k]
        if len(top) == k and prev is not None and all(
                abs(a - b) < tol * (abs(b) + EPS_NORM) for a, b in zip(top, prev, strict=True)):
            converged = True
            break
        if beta < EPS_NORM * max(1.0, abs(alpha)):
            converged = len(top) == k
            break
        if j + 1 == steps:
            converged = len(basis) == n
            break
        prev = top if len(top) == k else None
        betas.append(beta)
        basis.append(group_scale(1.0 / beta, w))
    if len(top) < k:  # Krylov space smaller than k: pad honestly with NaN
        top = top + [math.nan] * (k - len(top))
    return EigenResult(top, len(alphas), len(alphas), converged, "lanczos")


def top_eigenvalues(loss_fn: Callable[[], Tensor], params: Params, *, k: int = 1,
                    method: str = "lanczos", tol: float = 1e-4, max_iter: int = 100,
                    seed: int = 0) -> EigenResult:
    """The k largest (algebraic) eigenvalues of the Hessian of ``loss_fn()`` w.r.t. ``params``.

    ``method``: ``lanczos`` (:func:`lanczos`, default: fewer HVPs, algebraic order) or
    ``power`` (:func:`power_iteration` with deflation, shifted where the dominant eigenvalue
    is negative: algebraic order too). ``tol`` is the
    relative change of the estimates that stops the iteration; ``max_iter`` caps the HVPs
    per eigenvalue (power) or in total (Lanczos). Seeded, so repeated calls agree.
    The units are those of the loss per parameter squared (nats for a cross-entropy).
    """
    params = list(params)
    if not params:
        raise ValueError("params is empty")
    return eigenvalues_of(hvp_operator(loss_fn, params), params, k=k, method=method, tol=tol,
                          max_iter=max_iter, seed=seed)


def eigenvalues_of(op: HVP, params: Params, *, k: int = 1, method: str = "lanczos",
                   tol: float = 1e-4, max_iter: int = 100, seed: int = 0) -> EigenResult:
    """:func:`top_eigenvalues` of any HVP operator (e.g. one averaged over a data set,
    :mod:`thoughtgrad.dynamics.dataset_hvp`)."""
    params = list(params)
    _check(k, tol, max_iter, method, sum(p.numel() for p in params))
    solver = lanczos if method == "lanczos" else power_iteration
    return solver(op, params, k=k, tol=tol, max_iter=max_iter, seed=seed)


# -- trace -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TraceResult:
    """Hutchinson estimate of tr(H): mean over samples, its standard error, HVPs used."""

    trace: float
    stderr: float
    hvps: int


def hutchinson_trace(loss_fn: Callable[[], Tensor], params: Params, *, n_samples: int = 100,
                     seed: int = 0) -> TraceResult:
    """tr(H) ~ mean over Rademacher vectors z of ``z^T H z`` (Hutchinson 1990).

    Unbiased; its standard error is the sample standard deviation over ``sqrt(n_samples)``
    (``nan`` for one sample). One HVP per sample.
    """
    return trace_of(hvp_operator(loss_fn, params), params, n_samples=n_samples, seed=seed)


def trace_of(op: HVP, params: Params, *, n_samples: int = 100, seed: int = 0) -> TraceResult:
    """:func:`hutchinson_trace` of any HVP operator."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    params = list(params)
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(n_samples):
        z = random_vectors(params, generator=gen, kind="rademacher")
        samples.append(group_dot(z, op(z)))
    vals = torch.tensor(samples, dtype=torch.float64)
    stderr = float(vals.std(unbiased=True) / math.sqrt(n_samples)) if n_samples > 1 else math.nan
    return TraceResult(float(vals.mean()), stderr, n_samples)
