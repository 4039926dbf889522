# SPDX-License-Identifier: MIT
"""Probes of training dynamics, run as callbacks of the one SFT loop (STYLE rule 10).

Each probe reads the loop's :class:`~thoughtgrad.train.sft.TrainState` and returns the
columns it measured; it never touches the optimizer or the parameters' ``.grad``:

==================  ===========================================================  ============
probe               columns of the ``dynamics`` table (one row per step)          when
==================  ===========================================================  ============
GradNormProbe       grad_norm (pre-clip), spike_abs, spike_rel, spike;            after backward
                    per-layer norms go to the ``layer_grad_norms`` table
CosineProbe         cos_prev: cosine of this step's gradient with the previous    after backward
                    step's (fp32 copy kept on the device, or on the CPU)
CurvatureProbe      lambda_max (+ method, iterations, HVPs, seconds, status) of   every N steps
                    the loss on a fixed probe batch; ``lambda_max_answer`` on
                    its answer-only labels (length control)
AnswerControlProbe  loss_answer, grad_norm_answer: the answer-only loss of the    after backward
                    same batch at the same weights (a diagnostic, not the update)
DistanceProbe       dist_init, dist_init_rel: ||theta - theta_0||, divided by     after the step
                    ||theta_0||
==================  ===========================================================  ============

:class:`DynamicsMonitor` is the callback the loop sees: it merges the probes' columns with
the loop's own (regime, step, loss, lr, skipped, status) into one row per step and appends
rows to a :class:`~thoughtgrad.report.store.RunDir` in shards, skipping steps already
written (a resumed run does not duplicate rows).

Why the answer-only control: the training loss is a mean over response tokens, so a long
chain-of-thought response averages many easy tokens with the few hard answer tokens, and
its gradient norm and curvature look smaller by construction. Measuring the answer-only
loss at the same weights separates "smoother landscape" from "longer average".
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from thoughtgrad.dynamics.hessian import top_eigenvalues
from thoughtgrad.train.sft import Batch, TrainState, lm_loss, logits_of

log = logging.getLogger(__name__)

Row = dict[str, Any]
LossFn = Callable[[nn.Module, Batch], Tensor]

EPS_NORM = 1e-12
"""Gradients with a smaller norm have no direction: their cosine is NaN."""
LAYER_RE = re.compile(r"(?:^|\.)(?:layers|blocks|h|layer)\.(\d+)\.")
NON_LAYER = -1
"""``layer`` of parameters outside the repeated blocks (embeddings, final norm, LM head)."""


def default_loss(model: nn.Module, batch: Batch) -> Tensor:
    """Mean response-token cross-entropy in nats (the loop's default loss)."""
    return lm_loss(logits_of(model, batch), batch.labels)


def layer_index(name: str) -> int:
    """0-based block index in a parameter name (``blocks.3.attn.q.weight`` -> 3), else -1."""
    m = LAYER_RE.search(name)
    return int(m.group(1)) if m else NON_LAYER


@contextlib.contextmanager
def math_attention() -> Iterator[None]:
    """Force PyTorch's math SDPA kernel: flash/memory-efficient kernels lack double backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Dropout off while probing; the previous mode is restored."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _named_trainable(model: nn.Module) -> list[tuple[str, Tensor]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Probe:
    """Base probe: every hook is optional and returns the columns it measured."""

    def on_train_start(self, state: TrainState) -> None:
        """Prepare (e.g. copy the initial weights)."""

    def after_backward(self, state: TrainState) -> Row:
        """Read the pre-clip gradients of this step."""
        return {}

    def on_step_end(self, state: TrainState) -> Row:
        """Read the weights after the optimizer step."""
        return {}

    def drain(self) -> dict[str, list[Row]]:
        """Rows for tables other than ``dynamics`` gathered since the last call."""
        return {}


class GradNormProbe(Probe):
    """Total pre-clip gradient norm, per-layer norms, and spike flags.

    ``spike_abs``: the norm exceeds ``tau`` (absolute; no flag when ``tau`` is None).
    ``spike_rel``: it exceeds ``factor`` times the median of the previous ``window`` norms
    (once ``min_history`` are known). ``spike`` is their union. Per-layer norms (L2 over
    every parameter of the block; ``layer = -1`` for parameters outside the blocks) go to
    the ``layer_grad_norms`` table when ``per_layer``.
    """

    def __init__(self, *, tau: float | None = None, factor: float = 3.0, window: int = 50,
                 min_history: int = 5, per_layer: bool = True) -> None:
        self.tau, self.factor, self.min_history, self.per_layer = tau, factor, min_history, \
            per_layer
        self.history: deque[float] = deque(maxlen=window)
        self._layers: list[Row] = []

    def seed_history(self, norms: Sequence[float]) -> None:
        """Restore the rolling window on resume (the norms of the steps already done)."""
        for v in norms:
            if math.isfinite(v):
                self.history.append(float(v))

    def after_backward(self, state: TrainState) -> Row:
        norm = state.grad_norm
        finite = math.isfinite(norm)
        spike_abs = bool(finite and self.tau is not None and norm > self.tau)
        spike_rel = False
        if finite and len(self.history) >= self.min_history:
            spike_rel = norm > self.factor * statistics.median(self.history)
        if finite:
            self.history.append(norm)
        if self.per_layer and finite:
            sq: dict[int, float] = {}
            for name, p in _named_trainable(state.model):
                if p.grad is not None:
                    layer = layer_index(name)
                    sq[layer] = sq.get(layer, 0.0) + float(p.grad.detach().float().pow(2).sum())
            self._layers += [{"step": state.step, "layer": k, "grad_norm": math.sqrt(v)}
                             for k, v in sorted(sq.items())]
        return {"spike_abs": spike_abs, "spike_rel": bool(spike_rel),
                "spike": bool(spike_abs or spike_rel)}

    def drain(self) -> dict[str, list[Row]]:
        out, self._layers = self._layers, []
        return {"layer_grad_norms": out} if out else {}


class CosineProbe(Probe):
    """Cosine similarity of consecutive steps' full gradients (pre-clip).

    The previous gradient is kept as one flat fp32 vector on the model's device, or on
    the CPU with ``offload=True`` when device memory is short. NaN for the first step, after
    a skipped (non-finite) step, and after a resume (the previous gradient is not saved).
    """

    def __init__(self, *, offload: bool = False) -> None:
        self.offload = offload
        self.prev: Tensor | None = None

    def after_backward(self, state: TrainState) -> Row:
        grads = [p.grad for p in state.params if p.grad is not None]
        if not grads or not math.isfinite(state.grad_norm):
            self.prev = None
            return {"cos_prev": math.nan}
        flat = torch.cat([g.detach().float().reshape(-1) for g in grads])  # P
        if self.offload:
            flat = flat.cpu()
        cos = math.nan
        if self.prev is not None and self.prev.shape == flat.shape:
            denom = float(flat.norm() * self.prev.norm())
            if denom > EPS_NORM:
                cos = float(flat @ self.prev) / denom
        self.prev = flat
        return {"cos_prev": cos}


class AnswerControlProbe(Probe):
    """Loss and gradient norm of the answer-only loss on this step's batch, same weights.

    ``answer_batches(step)`` returns the step's batch with only the answer tokens labelled
    (same ``input_ids``). The gradient is taken with ``torch.autograd.grad`` (``.grad`` is
    untouched) every ``every`` steps; other steps get NaN.
    """

    def __init__(self, answer_batches: Callable[[int], Batch], *, every: int = 1,
                 loss_fn: LossFn = default_loss) -> None:
        self.answer_batches, self.every, self.loss_fn = answer_batches, every, loss_fn

    def after_backward(self, state: TrainState) -> Row:
        if state.step % self.every:
            return {"loss_answer": math.nan, "grad_norm_answer": math.nan}
        device = state.params[0].device if state.params else "cpu"
        batch = self.answer_batches(state.step).to(device)
        loss = self.loss_fn(state.model, batch)
        grads = torch.autograd.grad(loss, state.params, allow_unused=True)
        sq = sum(float(g.detach().float().pow(2).sum()) for g in grads if g is not None)
        return {"loss_answer": float(loss.detach()), "grad_norm_answer": math.sqrt(sq)}


class CurvatureProbe(Probe):
    """lambda_max of the loss on a fixed probe batch every ``every`` steps (and at step 0).

    Measured after backward, at the weights the step's gradient was taken at, in eval
    mode with the math attention kernel. ``method``: ``lanczos``, ``power`` or ``both``
    (``lambda_max`` is then Lanczos and ``lambda_max_power`` the power estimate). With
    ``answer_batch`` the same is measured on the answer-only loss (``lambda_max_answer``).
    A failure (e.g. out of memory in the HVP) is recorded in ``status`` and training
    continues; other steps get NaN.
    """

    def __init__(self, probe_batch: Batch, *, every: int = 100, method: str = "lanczos",
                 tol: float = 1e-3, max_iter: int = 50, seed: int = 0,
                 answer_batch: Batch | None = None, loss_fn: LossFn = default_loss,
                 last_step: int | None = None) -> None:
        if method not in ("lanczos", "power", "both"):
            raise ValueError(f"unknown curvature method {method!r}")
        self.probe_batch, self.answer_batch = probe_batch, answer_batch
        self.every, self.method, self.tol, self.max_iter, self.seed = every, method, tol, \
            max_iter, seed
        self.loss_fn, self.last_step = loss_fn, last_step

    def due(self, step: int) -> bool:
        return step % self.every == 0 or (self.last_step is not None and step == self.last_step)

    def _measure(self, model: nn.Module, params: list[Tensor], batch: Batch,
                 method: str) -> tuple[float, int, int, bool]:
        device = params[0].device
        b = batch.to(device)
        res = top_eigenvalues(lambda: self.loss_fn(model, b), params, k=1, method=method,
                              tol=self.tol, max_iter=self.max_iter, seed=self.seed)
        return res.eigenvalues[0], res.iterations, res.hvps, res.converged

    def after_backward(self, state: TrainState) -> Row:
        row: Row = {"lambda_max": math.nan, "lambda_method": None, "lambda_iters": None,
                    "lambda_hvps": None, "lambda_converged": None, "lambda_seconds": math.nan,
                    "lambda_max_power": math.nan, "lambda_max_answer": math.nan}
        if not self.due(state.step) or not state.params:
            return row
        first = "power" if self.method == "power" else "lanczos"
        t0 = time.perf_counter()
        statuses = []
        with eval_mode(state.model), math_attention():
            try:
                lam, iters, hvps, conv = self._measure(state.model, state.params,
                                                       self.probe_batch, first)
                row.update(lambda_max=lam, lambda_method=first, lambda_iters=iters,
                           lambda_hvps=hvps, lambda_converged=conv)
                if self.method == "both":
                    lam_p, _, hvps_p, _ = self._measure(state.model, state.params,
                                                        self.probe_batch, "power")
                    row.update(lambda_max_power=lam_p, lambda_hvps=hvps + hvps_p)
                if self.answer_batch is not None:
                    row["lambda_max_answer"] = self._measure(state.model, state.params,
                                                             self.answer_batch, first)[0]
            except (RuntimeError, torch.OutOfMemoryError) as exc:
                kind = "oom" if _is_oom(exc) else "error"
                statuses.append(f"curvature_{kind}: {str(exc).splitlines()[0][:200]}")
                log.warning("curvature probe failed at step %d: %s", state.step, exc)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        row["lambda_seconds"] = time.perf_counter() - t0
        if statuses:
            row["status"] = "; ".join(statuses)
        return row


class DistanceProbe(Probe):
    """L2 distance of the trainable weights from their initial values, and relative to
    ``||theta_0||``, after each step's update (every ``every`` steps; NaN otherwise).

    ``initial`` (name -> tensor) is the reference for a resumed run; without it the
    weights at ``on_train_start`` are copied (fp32, on the CPU with ``offload``).
    """

    def __init__(self, *, initial: dict[str, Tensor] | None = None, every: int = 1,
                 offload: bool = False) -> None:
        self.initial, self.every, self.offload = initial, every, offload
        self._ref: list[tuple[Tensor, Tensor]] = []
        self._norm0 = math.nan

    def on_train_start(self, state: TrainState) -> None:
        named = _named_trainable(state.model)
        init = self.initial or {n: p.detach() for n, p in named}
        missing = [n for n, _ in named if n not in init]
        if missing:
            raise ValueError(f"initial weights lack {missing[:3]}")
        self._ref = []
        for n, p in named:
            ref = init[n].detach().float().clone()
            self._ref.append((p, ref.cpu() if self.offload else ref.to(p.device)))
        self._norm0 = math.sqrt(sum(float(r.pow(2).sum()) for _, r in self._ref))

    def on_step_end(self, state: TrainState) -> Row:
        if state.step % self.every:
            return {"dist_init": math.nan, "dist_init_rel": math.nan}
        sq = 0.0
        for p, ref in self._ref:
            sq += float((p.detach().float().to(ref.device) - ref).pow(2).sum())
        d = math.sqrt(sq)
        return {"dist_init": d, "dist_init_rel": d / self._norm0 if self._norm0 > 0 else math.nan}


DYNAMICS_COLUMNS = ("regime", "step", "loss", "grad_norm", "lr", "skipped", "spike_abs",
                    "spike_rel", "spike", "cos_prev", "lambda_max", "lambda_method",
                    "lambda_iters", "lambda_hvps", "lambda_converged", "lambda_seconds",
                    "lambda_max_power", "dist_init", "dist_init_rel", "loss_answer",
                    "grad_norm_answer", "lambda_max_answer", "status")


class DynamicsMonitor:
    """The loop callback: runs the probes and writes one ``dynamics`` row per step.

    Rows are kept in memory (``rows``) and, with a ``run``, appended to its tables every
    ``flush_every`` steps and at the end. Steps already in the run's ``dynamics`` table are
    not written again, so re-running a resumed command keeps one row per step. ``status``
    is ``ok``, ``nonfinite`` (the loss or gradient was NaN/inf) or a probe's failure.
    """

    def __init__(self, probes: Sequence[Probe], *, regime: str, run: Any = None,
                 flush_every: int = 50) -> None:
        self.probes, self.regime, self.run, self.flush_every = list(probes), regime, run, \
            flush_every
        self.rows: list[Row] = []
        self._pending: list[Row] = []
        self._current: Row = {}
        self._done: set[int] = set()
        self._extra: dict[str, list[Row]] = {}

    def on_train_start(self, state: TrainState) -> None:
        if self.run is not None and self.run.has_table("dynamics"):
            prev = self.run.read("dynamics")
            prev = prev[prev["regime"] == self.regime].sort_values("step")
            self._done = {int(s) for s in prev["step"]}
            for p in self.probes:
                if isinstance(p, GradNormProbe):
                    p.seed_history(prev["grad_norm"].tolist())
        for p in self.probes:
            p.on_train_start(state)

    def after_backward(self, state: TrainState) -> None:
        # the HF Trainer callback learns the loss only later (from the logs)
        loss_ok = state.extra.get("loss_pending", False) or math.isfinite(state.loss)
        finite = loss_ok and math.isfinite(state.grad_norm)
        row: Row = {"regime": self.regime, "step": state.step, "loss": state.loss,
                    "grad_norm": state.grad_norm, "lr": state.lr,
                    "status": "ok" if finite else "nonfinite"}
        statuses = [] if finite else ["nonfinite"]
        for p in self.probes:
            if not finite and not isinstance(p, (GradNormProbe, CosineProbe)):
                continue
            cols = p.after_backward(state)
            if "status" in cols:
                statuses.append(cols.pop("status"))
            row.update(cols)
        row["status"] = "; ".join(statuses) or "ok"
        self._current = row

    def on_step_end(self, state: TrainState) -> None:
        row = self._current
        row["skipped"] = bool(state.skipped)
        for p in self.probes:
            row.update(p.on_step_end(state))
        row = {c: row.get(c) for c in DYNAMICS_COLUMNS} | \
            {k: v for k, v in row.items() if k not in DYNAMICS_COLUMNS}
        for c in DYNAMICS_COLUMNS:
            if row[c] is None and c not in ("lambda_method", "status", "lambda_iters",
                                            "lambda_hvps", "lambda_converged"):
                row[c] = math.nan
        self.rows.append(row)
        if state.step not in self._done:
            self._pending.append(row)
        for p in self.probes:
            for table, rows in p.drain().items():
                self._extra.setdefault(table, []).extend(
                    {"regime": self.regime, **r} for r in rows if r["step"] not in self._done)
        if (state.step + 1) % self.flush_every == 0:
            self.flush()

    def on_train_end(self, state: TrainState) -> None:
        self.flush()

    def flush(self) -> None:
        """Append pending rows to the run's tables (no-op without a run)."""
        if self.run is None:
            self._pending, self._extra = [], {}
            return
        if self._pending:
            self.run.append("dynamics", self._pending)
            self._done |= {int(r["step"]) for r in self._pending}
            self._pending = []
        for table, rows in self._extra.items():
            if rows:
                self.run.append(table, rows)
        self._extra = {}
