# SPDX-License-Identifier: MIT
"""Curve and separation statistics for the reports: pure numpy, no torch.

Everything here takes arrays and returns arrays, floats or small dicts; nothing reads
files or mutates its inputs. Bootstrap resampling is seeded (``numpy.random.default_rng``)
and vectorised: all ``n_boot`` resamples are drawn as one index matrix.

* :func:`bootstrap_mean_ci` / :func:`bootstrap_mean_ci_columns` - the mean across samples
  and its percentile-bootstrap interval (default 95 %, 1000 resamples).
* :func:`mad`, :func:`mad_segments` - the paper's mean absolute difference between
  adjacent layers of a curve, over all layers and over early / middle / late thirds.
* :func:`relative_difference` - the mean relative difference of two curves and the layers
  where it is largest.
* :func:`auroc`, :func:`auroc_ci` - rank-based AUROC (ties count one half) and its
  stratified bootstrap interval; :func:`cohens_d` - the pooled-SD effect size.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from jaxtyping import Float
from numpy import ndarray

N_BOOT = 1000
LEVEL = 0.95
EPS_REL = 1e-12  # a reference value this close to zero makes a relative difference undefined
SEGMENTS = ("early", "middle", "late")


# -- bootstrap of the mean ------------------------------------------------------------------
def _resample_index(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n))  # (n_boot, n)


def bootstrap_mean_ci_columns(x: Float[ndarray, "S C"], *, n_boot: int = N_BOOT,
                              level: float = LEVEL, seed: int = 0
                              ) -> tuple[Float[ndarray, " C"], Float[ndarray, " C"],
                                         Float[ndarray, " C"]]:
    """Mean over samples (rows) of every column and its percentile-bootstrap interval.

    The same resampled rows are used for every column (samples are resampled, not
    cells), so intervals of the layers of one curve are jointly drawn. NaN cells (a sample
    missing one layer) are ignored by the mean. With fewer than two non-NaN samples in a
    column its interval is NaN (no interval from one sample).
    Returns ``(mean, lo, hi)``, each of shape ``(C,)``.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array (samples x columns), got shape {x.shape}")
    n, c = x.shape
    nan = np.full(c, np.nan)
    if n == 0:
        return nan, nan.copy(), nan.copy()
    with _quiet():
        mean = np.nanmean(x, axis=0)  # (C,)
    rng = np.random.default_rng(seed)
    idx = _resample_index(rng, n, n_boot)
    with _quiet():
        boots = np.nanmean(x[idx], axis=1)  # (n_boot, C)
        alpha = (1.0 - level) / 2.0
        lo = np.nanquantile(boots, alpha, axis=0)
        hi = np.nanquantile(boots, 1.0 - alpha, axis=0)
    few = np.sum(~np.isnan(x), axis=0) < 2
    lo[few] = np.nan
    hi[few] = np.nan
    return mean, lo, hi


def bootstrap_mean_ci(values: Float[ndarray, " S"], *, n_boot: int = N_BOOT,
                      level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile-bootstrap interval ``(mean, lo, hi)``."""
    m, lo, hi = bootstrap_mean_ci_columns(np.asarray(values, dtype=np.float64)[:, None],
                                          n_boot=n_boot, level=level, seed=seed)
    return float(m[0]), float(lo[0]), float(hi[0])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence numpy's 'mean of empty slice' warnings (all-NaN columns give NaN)."""
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


# -- curve shape ------------------------------------------------------------------------------
def _sorted_curve(layers: Sequence[int] | ndarray, values: Sequence[float] | ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    lay = np.asarray(layers)
    val = np.asarray(values, dtype=np.float64)
    if lay.shape != val.shape:
        raise ValueError(f"layers {lay.shape} and values {val.shape} differ in shape")
    order = np.argsort(lay, kind="stable")
    return lay[order], val[order]


def mad(values: Float[ndarray, " L"]) -> float:
    """Mean absolute difference between adjacent entries (layers already in order).

    ``mean_l |v[l+1] - v[l]|`` over the L-1 adjacent pairs; NaN when L < 2.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return float("nan")
    return float(np.mean(np.abs(np.diff(v))))


def mad_segments(layers: Sequence[int] | ndarray, values: Sequence[float] | ndarray
                 ) -> dict[str, float]:
    """MAD of a curve over all layers and over its early / middle / late thirds.

    The sorted layer list is split with ``np.array_split(…, 3)`` (so 28 layers give
    10 / 9 / 9); each third's MAD uses only the adjacent pairs inside it. A third with
    fewer than two layers has MAD NaN.
    """
    lay, val = _sorted_curve(layers, values)
    out = {"all": mad(val)}
    for name, part in zip(SEGMENTS, np.array_split(np.arange(lay.size), 3), strict=True):
        out[name] = mad(val[part])
    return out


def relative_difference(layers: Sequence[int] | ndarray, a: Sequence[float] | ndarray,
                        b: Sequence[float] | ndarray, *, top: int = 3) -> dict[str, object]:
    """How much curve ``a`` differs from reference curve ``b``, layer by layer.

    Per layer ``r_l = (a_l - b_l) / |b_l|`` (dimensionless; layers where ``|b_l|`` is below
    ``EPS_REL`` are left out). Returns ``mean_rel`` (mean of ``r_l``), ``mean_abs_rel``
    (mean of ``|r_l|``) and ``top_layers``: the ``top`` layers with the largest ``|r_l|``,
    largest first.
    """
    lay, va = _sorted_curve(layers, a)
    _, vb = _sorted_curve(layers, b)
    ok = np.abs(vb) > EPS_REL
    ok &= ~(np.isnan(va) | np.isnan(vb))
    if not ok.any():
        return {"mean_rel": float("nan"), "mean_abs_rel": float("nan"), "top_layers": []}
    rel = (va[ok] - vb[ok]) / np.abs(vb[ok])
    order = np.argsort(-np.abs(rel), kind="stable")[:top]
    return {"mean_rel": float(np.mean(rel)), "mean_abs_rel": float(np.mean(np.abs(rel))),
            "top_layers": [int(x) for x in lay[ok][order]]}


# -- separation -------------------------------------------------------------------------------
def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    uniq, inv, counts = np.unique(x, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])  # 0-based start of each tie block
    avg = first + (counts + 1) / 2.0
    del uniq
    return avg[inv]


def auroc(pos: Float[ndarray, " P"], neg: Float[ndarray, " N"]) -> float:
    """P(a random positive scores above a random negative), ties counting one half.

    Rank form of the Mann-Whitney U statistic:
    ``(sum of positive ranks - P(P+1)/2) / (P N)``. NaN when either group is empty.
    """
    p = np.asarray(pos, dtype=np.float64)
    q = np.asarray(neg, dtype=np.float64)
    p, q = p[~np.isnan(p)], q[~np.isnan(q)]
    if p.size == 0 or q.size == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([p, q]))
    u = ranks[: p.size].sum() - p.size * (p.size + 1) / 2.0
    return float(u / (p.size * q.size))


def auroc_ci(pos: Float[ndarray, " P"], neg: Float[ndarray, " N"], *, n_boot: int = N_BOOT,
             level: float = LEVEL, seed: int = 0) -> tuple[float, float, float]:
    """AUROC with a stratified percentile-bootstrap interval ``(auroc, lo, hi)``.

    Positives and negatives are resampled separately. Vectorised with the pair matrix
    ``C[i, j] = 1[p_i > n_j] + 0.5 * 1[p_i = n_j]``: a resample with draw counts
    ``w_p, w_n`` has AUROC ``w_p^T C w_n / (P N)``. The interval is NaN when either group
    has fewer than two samples.
    """
    p = np.asarray(pos, dtype=np.float64)
    q = np.asarray(neg, dtype=np.float64)
    p, q = p[~np.isnan(p)], q[~np.isnan(q)]
    point = auroc(p, q)
    if p.size < 2 or q.size < 2:
        return point, float("nan"), float("nan")
    pair = (p[:, None] > q[None, :]) + 0.5 * (p[:, None] == q[None, :])  # (P, N)
    rng = np.random.default_rng(seed)
    ip = _resample_index(rng, p.size, n_boot)
    iq = _resample_index(rng, q.size, n_boot)
    wp = np.zeros((n_boot, p.size))
    wq = np.zeros((n_boot, q.size))
    rows = np.arange(n_boot)[:, None]
    np.add.at(wp, (rows, ip), 1.0)  # (n_boot, P) draw counts
    np.add.at(wq, (rows, iq), 1.0)  # (n_boot, N)
    boots = np.einsum("bp,pn,bn->b", wp, pair, wq) / (p.size * q.size)  # (n_boot,)
    alpha = (1.0 - level) / 2.0
    return point, float(np.quantile(boots, alpha)), float(np.quantile(boots, 1.0 - alpha))


def cohens_d(pos: Float[ndarray, " P"], neg: Float[ndarray, " N"]) -> float:
    """Cohen's d: ``(mean_pos - mean_neg) / s_pooled``, sample variances (ddof=1).

    ``s_pooled = sqrt(((P-1) s_p^2 + (N-1) s_n^2) / (P + N - 2))``. NaN when P + N < 3
    or the pooled SD is zero.
    """
    p = np.asarray(pos, dtype=np.float64)
    q = np.asarray(neg, dtype=np.float64)
    p, q = p[~np.isnan(p)], q[~np.isnan(q)]
    if p.size < 1 or q.size < 1 or p.size + q.size < 3:
        return float("nan")
    vp = p.var(ddof=1) if p.size > 1 else 0.0
    vq = q.var(ddof=1) if q.size > 1 else 0.0
    pooled = np.sqrt(((p.size - 1) * vp + (q.size - 1) * vq) / (p.size + q.size - 2))
    if pooled == 0:
        return float("nan")
    return float((p.mean() - q.mean()) / pooled)
