# SPDX-License-Identifier: MIT
"""Power iteration, Lanczos and Hutchinson against the explicitly formed Hessian."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from thoughtgrad.dynamics.hessian import (
    group_axpy,
    group_dot,
    hutchinson_trace,
    hvp,
    hvp_forward_over_reverse,
    lanczos,
    normalize,
    orthogonalize,
    top_eigenvalues,
)


def mlp_problem(seed: int = 0, d_in: int = 5, hidden: int = 10, classes: int = 3, n: int = 32):
    """A 2-layer tanh MLP with cross-entropy loss: 5*10+10+10*3+3 = 93 parameters, fp64."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh(), nn.Linear(hidden, classes)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.8)
    x = torch.randn(n, d_in, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=g)
    params = list(model.parameters())
    names = [name for name, _ in model.named_parameters()]

    def loss_fn() -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    def loss_of(ps: tuple[torch.Tensor, ...]) -> torch.Tensor:
        out = torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (x,))
        return F.cross_entropy(out, y)

    return model, params, loss_fn, loss_of


def explicit_hessian(params, loss_of) -> torch.Tensor:
    """The full Hessian over the concatenated parameters (slow oracle)."""
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    flat0 = torch.cat([p.detach().reshape(-1) for p in params])

    def f(flat: torch.Tensor) -> torch.Tensor:
        ps = tuple(c.view(s) for c, s in zip(flat.split(sizes), shapes, strict=True))
        return loss_of(ps)

    H = torch.func.hessian(f)(flat0)  # n n
    return (H + H.T) / 2


@pytest.fixture(scope="module")
def problem():
    model, params, loss_fn, loss_of = mlp_problem()
    H = explicit_hessian(params, loss_of)
    evals = torch.linalg.eigvalsh(H).flip(0)  # descending
    return params, loss_fn, loss_of, H, evals


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def test_hvp_matches_explicit_hessian(problem) -> None:
    params, loss_fn, loss_of, H, _ = problem
    g = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    flat_v = torch.cat([t.reshape(-1) for t in v])
    want = H @ flat_v
    got = torch.cat([t.reshape(-1) for t in hvp(loss_fn, params, v)])
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    fwd = torch.cat([t.reshape(-1) for t in hvp_forward_over_reverse(loss_of, params, v)])
    torch.testing.assert_close(fwd, want, rtol=1e-10, atol=1e-10)


def test_hvp_does_not_mutate_inputs(problem) -> None:
    params, loss_fn, *_ = problem
    before = [p.detach().clone() for p in params]
    v = [torch.ones_like(p) for p in params]
    v_before = [t.clone() for t in v]
    hvp(loss_fn, params, v)
    for a, b in zip(params, before, strict=True):
        assert torch.equal(a.detach(), b)
    for a, b in zip(v, v_before, strict=True):
        assert torch.equal(a, b)
    assert all(p.grad is None for p in params)


@pytest.mark.parametrize("method", ["lanczos", "power"])
@pytest.mark.parametrize("k", [1, 3])
def test_top_eigenvalues_match_eigvalsh(problem, method: str, k: int) -> None:
    params, loss_fn, _, _, evals = problem
    # power iteration orders by magnitude: this problem must have its top-k by magnitude
    # equal to its top-k algebraic, or the comparison below would test the wrong thing.
    by_mag = sorted(evals.tolist(), key=abs, reverse=True)[:k]
    assert sorted(by_mag, reverse=True) == evals[:k].tolist()
    res = top_eigenvalues(loss_fn, params, k=k, method=method, tol=1e-10, max_iter=2000)
    assert len(res.eigenvalues) == k
    assert res.eigenvalues == sorted(res.eigenvalues, reverse=True)
    assert all(isinstance(e, float) for e in res.eigenvalues)
    bad = [(i, got, float(want)) for i, (got, want) in enumerate(zip(res.eigenvalues, evals[:k],
                                                                        strict=True))
           if rel_err(got, float(want)) > 1e-3]
    assert not bad, f"{method} k={k}: mismatching eigenvalues (index, got, want): {bad}"
    assert res.converged
    assert res.hvps >= res.iterations if method == "power" else res.hvps == res.iterations


def test_lanczos_uses_fewer_hvps_than_power(problem) -> None:
    params, loss_fn, *_ = problem
    lz = top_eigenvalues(loss_fn, params, method="lanczos", tol=1e-6, max_iter=500)
    pw = top_eigenvalues(loss_fn, params, method="power", tol=1e-6, max_iter=500)
    assert rel_err(lz.eigenvalues[0], pw.eigenvalues[0]) < 1e-3
    assert lz.hvps < pw.hvps


def test_both_methods_find_the_algebraic_top_of_an_indefinite_diagonal() -> None:
    """H = diag(1, 2, -10): the algebraic top is 2, the largest magnitude -10 (plain power
    iteration's answer, which power_iteration must not return)."""
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    d = torch.tensor([1.0, 2.0, -10.0], dtype=torch.float64)

    def loss_fn() -> torch.Tensor:
        return 0.5 * (d * w * w).sum()

    lz = top_eigenvalues(loss_fn, [w], k=1, method="lanczos", tol=1e-12, max_iter=10)
    assert lz.eigenvalues[0] == pytest.approx(2.0, rel=1e-9)
    pw = top_eigenvalues(loss_fn, [w], k=1, method="power", tol=1e-12, max_iter=2000)
    assert pw.eigenvalues[0] == pytest.approx(2.0, rel=1e-6)
    assert pw.converged
    # the Krylov space of a 3x3 matrix is exhausted in 3 steps: exact and converged
    full = top_eigenvalues(loss_fn, [w], k=3, method="lanczos", tol=1e-12, max_iter=10)
    assert full.eigenvalues == pytest.approx([2.0, 1.0, -10.0], rel=1e-9)
    assert full.converged and full.hvps == 3


def test_power_deflation_keeps_algebraic_order() -> None:
    """H = diag(3, -2, 1): after 3, the dominant remaining eigenvalue is -2, but the second
    largest algebraic is 1."""
    w = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    d = torch.tensor([3.0, -2.0, 1.0], dtype=torch.float64)

    def loss_fn() -> torch.Tensor:
        return 0.5 * (d * w * w).sum()

    pw = top_eigenvalues(loss_fn, [w], k=2, method="power", tol=1e-12, max_iter=2000)
    assert pw.eigenvalues == pytest.approx([3.0, 1.0], rel=1e-6)
    assert pw.converged


@pytest.mark.parametrize("k", [1, 2])
def test_power_on_an_indefinite_tanh_network(k: int) -> None:
    """A tanh MLP whose Hessian's largest-magnitude eigenvalue is negative (about -2.70,
    while the algebraic top is about 2.14): both methods give eigvalsh's algebraic top-k."""
    _, params, loss_fn, loss_of = mlp_problem(seed=12, n=8)
    evals = torch.linalg.eigvalsh(explicit_hessian(params, loss_of)).flip(0)  # descending
    assert abs(float(evals[-1])) > float(evals[0]) > 0  # the case this test is about
    want = evals[:k].tolist()
    for method in ("power", "lanczos"):
        res = top_eigenvalues(loss_fn, params, k=k, method=method, tol=1e-10, max_iter=5000)
        bad = [(i, got, w) for i, (got, w) in enumerate(zip(res.eigenvalues, want, strict=True))
               if rel_err(got, w) > 1e-4]
        assert not bad, f"{method} k={k}: mismatching eigenvalues (index, got, want): {bad}"
        assert res.converged, method


@settings(max_examples=10, deadline=None)
@given(n=st.integers(2, 30), k=st.integers(1, 3), seed=st.integers(0, 10_000))
def test_lanczos_on_random_quadratics(n: int, k: int, seed: int) -> None:
    k = min(k, n)
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    A = (a + a.T) / 2
    w = torch.zeros(n, dtype=torch.float64, requires_grad=True)

    def loss_fn() -> torch.Tensor:
        return 0.5 * w @ A @ w

    res = top_eigenvalues(loss_fn, [w], k=k, method="lanczos", tol=1e-12, max_iter=n)
    want = torch.linalg.eigvalsh(A).flip(0)[:k].tolist()
    assert res.eigenvalues == pytest.approx(want, rel=1e-6, abs=1e-8)


def test_hutchinson_trace_matches_exact_trace(problem) -> None:
    params, loss_fn, _, H, _ = problem
    exact = float(torch.trace(H))
    res = hutchinson_trace(loss_fn, params, n_samples=400, seed=0)
    assert res.hvps == 400
    # statistical tolerance: 5 standard errors; the stderr itself must be sensible
    assert abs(res.trace - exact) < 5 * res.stderr
    # the variance of z^T H z for Rademacher z is 2 * sum_{i != j} H_ij^2
    offdiag = float((H**2).sum() - (torch.diagonal(H) ** 2).sum())
    assert res.stderr == pytest.approx(math.sqrt(2 * offdiag / 400), rel=0.25)


def test_lanczos_respects_subset_of_params(problem) -> None:
    """Eigenvalues over one layer's parameters equal those of the Hessian's diagonal block."""
    params, loss_fn, _, H, _ = problem
    n0 = params[0].numel()
    block = H[:n0, :n0]
    want = torch.linalg.eigvalsh(block).flip(0)[:2].tolist()
    res = top_eigenvalues(loss_fn, params[:1], k=2, method="lanczos", tol=1e-10, max_iter=200)
    assert res.eigenvalues == pytest.approx(want, rel=1e-3)


def test_group_helpers_are_pure() -> None:
    xs = [torch.tensor([3.0, 4.0])]
    ys = [torch.tensor([1.0, 0.0])]
    z = group_axpy(2.0, xs, ys)
    assert torch.equal(xs[0], torch.tensor([3.0, 4.0]))
    assert torch.equal(ys[0], torch.tensor([1.0, 0.0]))
    assert torch.equal(z[0], torch.tensor([7.0, 8.0]))
    assert group_dot(normalize(xs), normalize(xs)) == pytest.approx(1.0)
    o = orthogonalize(xs, [ys])
    assert group_dot(o, ys) == pytest.approx(0.0)
    assert torch.equal(xs[0], torch.tensor([3.0, 4.0]))


def test_bad_arguments_raise() -> None:
    w = torch.zeros(3, requires_grad=True)

    def loss_fn() -> torch.Tensor:
        return (w * w).sum()

    with pytest.raises(ValueError, match="method"):
        top_eigenvalues(loss_fn, [w], method="eig")
    with pytest.raises(ValueError, match="k=4"):
        top_eigenvalues(loss_fn, [w], k=4)
    with pytest.raises(ValueError, match="k=4"):
        lanczos(lambda v: v, [w], k=4)


def test_lanczos_on_an_operator_matches_eigvalsh() -> None:
    """The exported solver on a bare operator (no loss, no autograd): v -> A v of a known
    symmetric A gives A's top eigenvalues, in a Krylov space exhausted in n steps."""
    g = torch.Generator().manual_seed(3)
    a = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A = (a + a.T) / 2
    w = torch.zeros(6, dtype=torch.float64)
    res = lanczos(lambda v: [A @ v[0]], [w], k=2, tol=1e-12, max_iter=6)
    assert res.eigenvalues == pytest.approx(torch.linalg.eigvalsh(A).flip(0)[:2].tolist(),
                                            rel=1e-9)
    assert res.hvps <= 6
