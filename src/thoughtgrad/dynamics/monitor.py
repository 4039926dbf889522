# SPDX-License-Identifier: MIT
"""Probes of training dynamics, run as callbacks of the one SFT loop (STYLE rule 10).

Each probe reads the loop's :class:`~thoughtgrad.train.sft.TrainState` and returns the
columns it measured; it never touches the optimizer or the parameters' ``.grad``:

==================  ===========================================================  ============
probe               columns of the ``dynamics`` table (one row per step)          when
==================  ===========================================================  ============
GradNormProbe       grad_norm (pre-clip), spike_abs, spike_rel, spike,            after backward
                    spike_source (which norm the flags were computed from);
                    per-layer norms go to the ``layer_grad_norms`` table
CosineProbe         cos_prev: cosine of this step's gradient with the previous    after backward
                    step's (fp32 copy kept on the device, or on the CPU)
CurvatureProbe      lambda_max (+ method, iterations, HVPs, seconds, status) of   every N steps
                    the loss on a fixed probe batch; under ``both`` also the
                    power estimate with its own iterations and HVPs;
                    ``lambda_max_answer`` on its answer-only labels
AnswerControlProbe  loss_answer, grad_norm_answer, cos_prev_answer,              after backward
                    spike_answer: the answer-only loss of the same batch at the
                    same weights (a diagnostic, not the update)
DistanceProbe       dist_init, dist_init_rel: ||theta - theta_0||, divided by     after the step
                    ||theta_0||
==================  ===========================================================  ============

:class:`DynamicsMonitor` is the callback the loop sees: it merges the probes' columns with
the loop's own (regime, step, loss, lr, skipped, status) into one row per step and appends
rows to a :class:`~thoughtgrad.report.store.RunDir` in shards, skipping steps already
written (a resumed run does not duplicate rows). A probe that raises at a step (out of
memory, a NaN in the HVP, anything but an interrupt) is recorded in that row's ``status``
and training goes on; a bad *setting* is refused when the probe is built, before training.

Why the answer-only control: the training loss is a mean over response tokens, so a long
chain-of-thought response averages many easy tokens with the few hard answer tokens, and
its gradient norm and curvature look smaller by construction. Measuring the answer-only
loss at the same weights separates "smoother landscape" from "longer average".
"""

from __future__ import annotations

import contextlib
import logging
import math
import numbers
import re
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd
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


DOUBLE_BACKWARD_ATTENTION = ("eager", "sdpa")
"""Hugging Face attention implementations with a double backward (``sdpa`` only under
:func:`math_attention`); any other (flash-attention, flex, hub kernels) is switched to
``eager`` while a Hessian-vector product runs."""


def _set_attention(model: nn.Module, name: str) -> None:
    setter = getattr(model, "set_attn_implementation", None)
    if callable(setter):
        try:
            setter(name)
            return
        except (ValueError, ImportError, RuntimeError) as exc:
            log.warning("set_attn_implementation(%r) failed (%s); setting the config", name,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    model.config._attn_implementation = name


@contextlib.contextmanager
def hvp_attention(model: nn.Module) -> Iterator[None]:
    """Attention that supports double backward, for the duration of an HVP.

    PyTorch's math SDPA kernel is forced (:func:`math_attention`), and a Hugging Face model
    whose ``config._attn_implementation`` is not in :data:`DOUBLE_BACKWARD_ATTENTION`
    (e.g. ``flash_attention_2``) is switched to ``eager`` through
    ``model.set_attn_implementation`` (or the config attribute on versions without it);
    the previous implementation is restored on exit, also after an error. gpt_mini has no
    such setting and only gets the math kernel.
    """
    before = getattr(getattr(model, "config", None), "_attn_implementation", None)
    switch = isinstance(before, str) and before not in DOUBLE_BACKWARD_ATTENTION
    if switch:
        _set_attention(model, "eager")
    try:
        with math_attention():
            yield
    finally:
        if switch:
            _set_attention(model, before)


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


def failure_status(name: str, exc: BaseException) -> str:
    """``<name>_oom: <first line>`` or ``<name>_error: <type>: <first line>`` (one line,
    at most 200 characters of message) for a probe that raised."""
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    if _is_oom(exc):
        return f"{name}_oom: {first}"
    return f"{name}_error: {type(exc).__name__}: {first}".rstrip(": ")


def _check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """ValueError unless ``value`` is a finite number > 0 (>= 0 with ``allow_zero``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>=' if allow_zero else '>'} 0, "
                         f"got {value!r}")


def _flat_grad(grads: Sequence[Tensor | None], offload: bool) -> Tensor:
    flat = torch.cat([g.detach().float().reshape(-1) for g in grads if g is not None])  # P
    return flat.cpu() if offload else flat


def _cosine(a: Tensor, b: Tensor | None) -> float:
    """Cosine of two flat vectors; NaN when ``b`` is missing, shapes differ, or either has
    no direction (norm product below :data:`EPS_NORM`)."""
    if b is None or a.shape != b.shape:
        return math.nan
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > EPS_NORM else math.nan


class Probe:
    """Base probe: every hook is optional and returns the columns it measured."""

    name = "probe"
    """Prefix of this probe's failure status (``<name>_error: ...``)."""

    def on_train_start(self, state: TrainState) -> None:
        """Prepare (e.g. copy the initial weights)."""

    def on_resume(self, previous: pd.DataFrame) -> None:
        """Restore rolling state from this regime's rows already written (sorted by step)."""

    def after_backward(self, state: TrainState) -> Row:
        """Read the pre-clip gradients of this step."""
        return {}

    def on_step_end(self, state: TrainState) -> Row:
        """Read the weights after the optimizer step."""
        return {}

    def drain(self) -> dict[str, list[Row]]:
        """Rows for tables other than ``dynamics`` gathered since the last call."""
        return {}


class SpikeDetector:
    """Spike flags of a stream of gradient norms (pure: floats in, flags out).

    ``abs``: the norm exceeds ``tau`` (never when ``tau`` is None). ``rel``: it exceeds
    ``factor`` times the median of the previous ``window`` finite norms, once
    ``min_history`` of them are known. Non-finite norms are never spikes and are not kept.
    """

    def __init__(self, *, tau: float | None = None, factor: float = 3.0, window: int = 50,
                 min_history: int = 5) -> None:
        if tau is not None:
            _check_positive("spike tau", tau, allow_zero=True)
        _check_positive("spike factor", factor)
        if window < 1 or min_history < 1:
            raise ValueError(f"spike window and min_history must be >= 1, got {window}, "
                             f"{min_history}")
        self.tau, self.factor, self.min_history = tau, factor, min_history
        self.history: deque[float] = deque(maxlen=window)

    def seed(self, norms: Sequence[float]) -> None:
        """Append known norms (e.g. the steps already done, on resume) to the window."""
        for v in norms:
            if v is not None and math.isfinite(v):
                self.history.append(float(v))

    def flags(self, norm: float) -> tuple[bool, bool]:
        """``(abs, rel)`` for ``norm`` against the current window, without recording it."""
        if not math.isfinite(norm):
            return False, False
        spike_abs = self.tau is not None and norm > self.tau
        spike_rel = len(self.history) >= self.min_history and \
            norm > self.factor * statistics.median(self.history)
        return bool(spike_abs), bool(spike_rel)

    def update(self, norm: float) -> tuple[bool, bool]:
        """:meth:`flags` of ``norm``, then ``norm`` joins the window (when finite)."""
        out = self.flags(norm)
        self.seed([norm])
        return out


class GradNormProbe(Probe):
    """Total gradient norm, per-layer norms, and spike flags (:class:`SpikeDetector`).

    ``spike_abs`` / ``spike_rel`` / ``spike`` (their union) are computed from
    ``state.grad_norm``; ``spike_source`` names that norm: ``pre_clip`` in the SFT loop,
    ``post_clip`` when the gradients were already clipped (the HF Trainer's
    ``on_pre_optimizer_step``; the callback then recomputes the flags from the pre-clip
    norm the Trainer logs). Per-layer norms (L2 over every parameter of the block;
    ``layer = -1`` for parameters outside the blocks) go to the ``layer_grad_norms`` table
    when ``per_layer``. On resume the window is refilled from ``history_column``.
    """

    name = "grad_norm"

    def __init__(self, *, tau: float | None = None, factor: float = 3.0, window: int = 50,
                 min_history: int = 5, per_layer: bool = True, norm_source: str = "pre_clip",
                 history_column: str = "grad_norm") -> None:
        if norm_source not in ("pre_clip", "post_clip"):
            raise ValueError(f"norm_source must be pre_clip or post_clip, got {norm_source!r}")
        self.detector = SpikeDetector(tau=tau, factor=factor, window=window,
                                      min_history=min_history)
        self.per_layer, self.norm_source, self.history_column = per_layer, norm_source, \
            history_column
        self._layers: list[Row] = []

    @property
    def history(self) -> deque[float]:
        return self.detector.history

    def seed_history(self, norms: Sequence[float]) -> None:
        """Restore the rolling window on resume (the norms of the steps already done)."""
        self.detector.seed(norms)

    def on_resume(self, previous: pd.DataFrame) -> None:
        if self.history_column in previous:
            self.seed_history(previous[self.history_column].tolist())

    def after_backward(self, state: TrainState) -> Row:
        norm = state.grad_norm
        spike_abs, spike_rel = self.detector.update(norm)
        if self.per_layer and math.isfinite(norm):
            sq: dict[int, float] = {}
            for name, p in _named_trainable(state.model):
                if p.grad is not None:
                    layer = layer_index(name)
                    sq[layer] = sq.get(layer, 0.0) + float(p.grad.detach().float().pow(2).sum())
            self._layers += [{"step": state.step, "layer": k, "grad_norm": math.sqrt(v)}
                             for k, v in sorted(sq.items())]
        return {"spike_abs": spike_abs, "spike_rel": spike_rel,
                "spike": spike_abs or spike_rel, "spike_source": self.norm_source}

    def drain(self) -> dict[str, list[Row]]:
        out, self._layers = self._layers, []
        return {"layer_grad_norms": out} if out else {}


class CosineProbe(Probe):
    """Cosine similarity of consecutive steps' full gradients (pre-clip).

    The previous gradient is kept as one flat fp32 vector on the model's device, or on
    the CPU with ``offload=True`` when device memory is short. NaN for the first step, after
    a skipped (non-finite) step, and after a resume (the previous gradient is not saved).
    """

    name = "cosine"

    def __init__(self, *, offload: bool = False) -> None:
        self.offload = offload
        self.prev: Tensor | None = None

    def after_backward(self, state: TrainState) -> Row:
        grads = [p.grad for p in state.params if p.grad is not None]
        if not grads or not math.isfinite(state.grad_norm):
            self.prev = None
            return {"cos_prev": math.nan}
        flat = _flat_grad(grads, self.offload)  # P
        cos = _cosine(flat, self.prev)
        self.prev = flat
        return {"cos_prev": cos}


class AnswerControlProbe(Probe):
    """The length control: the answer-only loss of this step's batch at the same weights.

    ``answer_batches(step)`` returns the step's batch with only the answer tokens labelled
    (same ``input_ids``). Every ``every`` steps (other steps get NaN) the answer-only loss
    (mean over answer tokens, nats) is differentiated with ``torch.autograd.grad`` (``.grad``
    and the update are untouched), giving the same claims as the full loss:

    * ``grad_norm_answer``: L2 norm of that gradient;
    * ``cos_prev_answer``: its cosine with the previous measured step's answer-only
      gradient (consecutive steps when ``every == 1``), NaN when that step was not measured
      (first step, a skipped or failed step, a resume) -- as ``cos_prev`` for the full loss;
    * ``spike_answer``: ``grad_norm_answer`` is an absolute (> ``tau``) or relative (>
      ``factor`` x rolling median of the previous answer-only norms) spike
      (:class:`SpikeDetector`, the same settings as the full-loss flags).
    """

    name = "answer_control"

    def __init__(self, answer_batches: Callable[[int], Batch], *, every: int = 1,
                 loss_fn: LossFn = default_loss, tau: float | None = None,
                 factor: float = 3.0, window: int = 50, min_history: int = 5,
                 offload: bool = False) -> None:
        if every < 1:
            raise ValueError(f"answer control every must be >= 1, got {every}")
        self.answer_batches, self.every, self.loss_fn, self.offload = answer_batches, every, \
            loss_fn, offload
        self.detector = SpikeDetector(tau=tau, factor=factor, window=window,
                                      min_history=min_history)
        self.prev: Tensor | None = None
        self.prev_step: int | None = None

    def on_resume(self, previous: pd.DataFrame) -> None:
        if "grad_norm_answer" in previous:
            self.detector.seed(previous["grad_norm_answer"].tolist())

    def after_backward(self, state: TrainState) -> Row:
        row: Row = {"loss_answer": math.nan, "grad_norm_answer": math.nan,
                    "cos_prev_answer": math.nan, "spike_answer": False}
        if state.step % self.every:
            return row
        consecutive = self.prev_step is not None and self.prev_step == state.step - self.every
        prev = self.prev if consecutive else None
        self.prev, self.prev_step = None, None  # until this step's gradient is known
        device = state.params[0].device if state.params else "cpu"
        batch = self.answer_batches(state.step).to(device)
        loss = self.loss_fn(state.model, batch)
        grads = torch.autograd.grad(loss, state.params, allow_unused=True)
        flat = _flat_grad(grads, self.offload)  # P
        norm = float(flat.norm())
        spike_abs, spike_rel = self.detector.update(norm)
        row.update(loss_answer=float(loss.detach()), grad_norm_answer=norm,
                   spike_answer=spike_abs or spike_rel)
        if math.isfinite(norm):
            row["cos_prev_answer"] = _cosine(flat, prev)
            self.prev, self.prev_step = flat, state.step
        return row


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
    """

    name = "curvature"

    def __init__(self, probe_batch: Batch, *, every: int = 100, method: str = "lanczos",
                 tol: float = 1e-3, max_iter: int = 50, seed: int = 0,
                 answer_batch: Batch | None = None, loss_fn: LossFn = default_loss,
                 last_step: int | None = None) -> None:
        if method not in ("lanczos", "power", "both"):
            raise ValueError(f"unknown curvature method {method!r}; choose lanczos, power "
                             "or both")
        _check_positive("curvature tol", tol)
        if every < 1 or max_iter < 1:
            raise ValueError(f"curvature every and max_iter must be >= 1, got {every}, "
                             f"{max_iter}")
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
                                                       self.probe_batch, first)
                row.update(lambda_max=lam, lambda_method=first, lambda_iters=iters,
                           lambda_hvps=hvps, lambda_converged=conv)
                if self.method == "both":
                    lam_p, iters_p, hvps_p, conv_p = self._measure(
                        state.model, state.params, self.probe_batch, "power")
                    row.update(lambda_max_power=lam_p, lambda_iters_power=iters_p,
                               lambda_hvps_power=hvps_p, lambda_converged_power=conv_p)
                if self.answer_batch is not None:
                    lam_a, iters_a, _, _ = self._measure(state.model, state.params,
                                                         self.answer_batch, first)
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


class DistanceProbe(Probe):
    """L2 distance of the trainable weights from their initial values, and relative to
    ``||theta_0||``, after each step's update (every ``every`` steps; NaN otherwise).

    ``initial`` (name -> tensor) is the reference for a resumed run; without it the
    weights at ``on_train_start`` are copied (fp32, on the CPU with ``offload``).
    """

    name = "distance"

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
                    "spike_rel", "spike", "spike_source", "cos_prev", "lambda_max",
                    "lambda_method", "lambda_iters", "lambda_hvps", "lambda_converged",
                    "lambda_seconds", "lambda_max_power", "lambda_iters_power",
                    "lambda_hvps_power", "lambda_converged_power", "dist_init",
                    "dist_init_rel", "loss_answer", "grad_norm_answer", "cos_prev_answer",
                    "spike_answer", "lambda_max_answer", "lambda_iters_answer", "status")
NULLABLE = ("spike_source", "lambda_method", "lambda_iters", "lambda_hvps", "lambda_converged",
            "lambda_iters_power", "lambda_hvps_power", "lambda_converged_power",
            "lambda_iters_answer", "status")
"""Columns left None (not NaN) where nothing was measured: labels, counts and flags."""


class DynamicsMonitor:
    """The loop callback: runs the probes and writes one ``dynamics`` row per step.

    Rows are kept in memory (``rows``) and, with a ``run``, appended to its tables every
    ``flush_every`` steps and at the end. Steps already in the run's ``dynamics`` table are
    not written again, so re-running a resumed command keeps one row per step. ``status``
    is ``ok``, ``nonfinite`` (the loss or gradient was NaN/inf) or the failures of the
    probes that raised at this step (``<probe>_oom: ...`` / ``<probe>_error: ...``, joined
    by ``; ``); a probe that raises leaves its columns NaN for that step and the run goes
    on. ``previous`` holds this regime's rows already written when training started.
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
        self.previous = pd.DataFrame()

    def on_train_start(self, state: TrainState) -> None:
        if self.run is not None and self.run.has_table("dynamics"):
            prev = self.run.read("dynamics")
            prev = prev[prev["regime"] == self.regime].sort_values("step")
            self._done = {int(s) for s in prev["step"]}
            self.previous = prev.reset_index(drop=True)
            for p in self.probes:
                p.on_resume(self.previous)
        for p in self.probes:
            p.on_train_start(state)

    def _run_probe(self, probe: Probe, hook: str, state: TrainState,
                   statuses: list[str]) -> Row:
        try:
            cols = getattr(probe, hook)(state)
        except Exception as exc:  # noqa: BLE001 -- a failed probe is recorded, not fatal
            status = failure_status(getattr(probe, "name", type(probe).__name__), exc)
            log.warning("probe failed at step %d: %s", state.step, status)
            statuses.append(status)
            return {}
        if "status" in cols:
            cols = dict(cols)
            statuses.append(cols.pop("status"))
        return cols

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
            row.update(self._run_probe(p, "after_backward", state, statuses))
        row["status"] = "; ".join(statuses) or "ok"
        self._current = row

    def on_step_end(self, state: TrainState) -> None:
        row = self._current
        row["skipped"] = bool(state.skipped)
        statuses = [row["status"]] if row.get("status", "ok") != "ok" else []
        for p in self.probes:
            row.update(self._run_probe(p, "on_step_end", state, statuses))
        row["status"] = "; ".join(statuses) or "ok"
        row = {c: row.get(c) for c in DYNAMICS_COLUMNS} | \
            {k: v for k, v in row.items() if k not in DYNAMICS_COLUMNS}
        for c in DYNAMICS_COLUMNS:
            if row[c] is None and c not in NULLABLE:
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
