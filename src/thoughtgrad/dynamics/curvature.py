# SPDX-License-Identifier: MIT
"""The curvature probe: the Hessian's largest eigenvalue of the loss on a fixed probe batch,
every N steps of the SFT loop (a :class:`~thoughtgrad.dynamics.probes.Probe`)."""

from __future__ import annotations

import logging
import math
import time

import torch
from torch import Tensor, nn

from thoughtgrad import distributed
from thoughtgrad.distributed import SINGLE, World
from thoughtgrad.dynamics.attention import hvp_attention
from thoughtgrad.dynamics.dataset_hvp import shared_hvp_operator
from thoughtgrad.dynamics.hessian import eigenvalues_of, top_eigenvalues
from thoughtgrad.dynamics.probes import (
    LossFn,
    Probe,
    Row,
    check_positive,
    default_loss,
    eval_mode,
    failure_status,
)
from thoughtgrad.train.sft import Batch, TrainState

log = logging.getLogger(__name__)

CURVATURE_METHODS = ("lanczos", "power", "both")
"""How lambda_max is estimated: Lanczos, power iteration, or both side by side."""


def check_curvature_method(method: str) -> str:
    """``method`` when it is one of :data:`CURVATURE_METHODS`, else a one-line
    ``ValueError``: the one check of the probe, the Trainer callback and the configs."""
    if method not in CURVATURE_METHODS:
        raise ValueError(f"unknown curvature method {method!r}; choose "
                         f"{', '.join(CURVATURE_METHODS)}")
    return method


class CurvatureProbe(Probe):
    """lambda_max of the loss on a fixed probe batch every ``every`` steps (and at step 0
    and ``last_step``).

    Measured after backward, at the weights the step's gradient was taken at, in eval
    mode under :func:`hvp_attention` (math SDPA kernel; an HF model's flash attention is
    switched to eager and back). ``method``: ``lanczos``, ``power`` or ``both``; under
    ``both`` ``lambda_max`` (with ``lambda_iters`` / ``lambda_hvps`` / ``lambda_converged``)
    is Lanczos and ``lambda_max_power`` the power estimate with its own
    ``lambda_iters_power`` / ``lambda_hvps_power`` / ``lambda_converged_power``. With
    ``answer_batch`` the first method is also run on the answer-only loss
    (``lambda_max_answer``, ``lambda_iters_answer``). Other steps get NaN / None.

    Bad settings raise ``ValueError`` here, before training. A failure while measuring
    (any exception: out of memory, an op without double backward, ...) or a non-finite
    estimate is recorded in ``status`` (``curvature_oom: ...``, ``curvature_error: ...``,
    ``curvature_nonfinite``) and training continues.

    Under a launcher (``state.world`` of several ranks) each rank keeps its
    :meth:`~thoughtgrad.train.sft.Batch.shard` of the probe batch and every
    Hessian-vector product is all-reduced (:func:`shared_hvp_operator`), so every rank
    runs the same iteration, in step, on the product of the whole probe batch. The
    products differentiate ``state.model``, the unwrapped module, so no
    DistributedDataParallel hook fires in the double backward. A failure on one rank
    only (out of memory) leaves the others waiting in a collective until the process
    group's timeout.
    """

    name = "curvature"

    def __init__(self, probe_batch: Batch, *, every: int = 100, method: str = "lanczos",
                 tol: float = 1e-3, max_iter: int = 50, seed: int = 0,
                 answer_batch: Batch | None = None, loss_fn: LossFn = default_loss,
                 last_step: int | None = None) -> None:
        check_curvature_method(method)
        check_positive("curvature tol", tol)
        if every < 1 or max_iter < 1:
            raise ValueError(f"curvature every and max_iter must be >= 1, got {every}, "
                             f"{max_iter}")
        self.probe_batch, self.answer_batch = probe_batch, answer_batch
        self.every, self.method, self.tol, self.max_iter, self.seed = every, method, tol, \
            max_iter, seed
        self.loss_fn, self.last_step = loss_fn, last_step

    def due(self, step: int) -> bool:
        return step % self.every == 0 or (self.last_step is not None and step == self.last_step)

    def _measure(self, model: nn.Module, params: list[Tensor], batch: Batch, method: str,
                 world: World = SINGLE) -> tuple[float, int, int, bool]:
        device = params[0].device
        if world.distributed:
            mine = batch.shard(world).to(device)
            op = shared_hvp_operator(
                (lambda: self.loss_fn(model, mine)) if mine.n_rows else None, mine.n_tokens,
                params, reduce=lambda ts: distributed.sum_tensors(world, ts))
            res = eigenvalues_of(op, params, k=1, method=method, tol=self.tol,
                                 max_iter=self.max_iter, seed=self.seed)
        else:
            b = batch.to(device)
            res = top_eigenvalues(lambda: self.loss_fn(model, b), params, k=1, method=method,
                                  tol=self.tol, max_iter=self.max_iter, seed=self.seed)
        return res.eigenvalues[0], res.iterations, res.hvps, res.converged

    def after_backward(self, state: TrainState) -> Row:
        row: Row = {"lambda_max": math.nan, "lambda_method": None, "lambda_iters": None,
                    "lambda_hvps": None, "lambda_converged": None, "lambda_seconds": math.nan,
                    "lambda_max_power": math.nan, "lambda_iters_power": None,
                    "lambda_hvps_power": None, "lambda_converged_power": None,
                    "lambda_max_answer": math.nan, "lambda_iters_answer": None}
        if not self.due(state.step) or not state.params:
            return row
        first = "power" if self.method == "power" else "lanczos"
        t0 = time.perf_counter()
        status = None
        try:
            with eval_mode(state.model), hvp_attention(state.model):
                lam, iters, hvps, conv = self._measure(state.model, state.params,
                                                       self.probe_batch, first, state.world)
                row.update(lambda_max=lam, lambda_method=first, lambda_iters=iters,
                           lambda_hvps=hvps, lambda_converged=conv)
                if self.method == "both":
                    lam_p, iters_p, hvps_p, conv_p = self._measure(
                        state.model, state.params, self.probe_batch, "power", state.world)
                    row.update(lambda_max_power=lam_p, lambda_iters_power=iters_p,
                               lambda_hvps_power=hvps_p, lambda_converged_power=conv_p)
                if self.answer_batch is not None:
                    lam_a, iters_a, _, _ = self._measure(state.model, state.params,
                                                         self.answer_batch, first,
                                                         state.world)
                    row.update(lambda_max_answer=lam_a, lambda_iters_answer=iters_a)
        except Exception as exc:  # noqa: BLE001 -- any probe failure is recorded, not fatal
            status = failure_status("curvature", exc)
            log.warning("curvature probe failed at step %d: %s", state.step, status)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        row["lambda_seconds"] = time.perf_counter() - t0
        wanted = ["lambda_max"] + (["lambda_max_power"] if self.method == "both" else []) \
            + (["lambda_max_answer"] if self.answer_batch is not None else [])
        if status is None and not all(math.isfinite(row[c]) for c in wanted):
            status = "curvature_nonfinite"
        if status is not None:
            row["status"] = status
        return row
