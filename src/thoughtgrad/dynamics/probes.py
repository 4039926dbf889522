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
                    (:mod:`thoughtgrad.dynamics.curvature`)
AnswerControlProbe  loss_answer, grad_norm_answer, cos_prev_answer,              after backward
                    spike_answer: the answer-only loss of the same batch at the
                    same weights (a diagnostic, not the update)
DistanceProbe       dist_init, dist_init_rel: ||theta - theta_0||, divided by     after the step
                    ||theta_0||
==================  ===========================================================  ============

:class:`~thoughtgrad.dynamics.monitor.DynamicsMonitor` runs them and merges their columns
into one row per step. A bad *setting* is refused when a probe is built, before training.

Why the answer-only control: the training loss is a mean over response tokens, so a long
chain-of-thought response averages many easy tokens with the few hard answer tokens, and
its gradient norm and curvature look smaller by construction. Measuring the answer-only
loss at the same weights separates "smoother landscape" from "longer average".
"""

from __future__ import annotations

import contextlib
import math
import numbers
import re
import statistics
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn

from thoughtgrad import distributed
from thoughtgrad.train.sft import Batch, TrainState, lm_loss, logits_of

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


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
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

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold for a resumed run to write the rows an uninterrupted
        one would (tensors on the CPU); {} when the rows already written are enough."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (called after :meth:`on_train_start` on a resume)."""


class SpikeDetector:
    """Spike flags of a stream of gradient norms (pure: floats in, flags out).

    ``abs``: the norm exceeds ``tau`` (never when ``tau`` is None). ``rel``: it exceeds
    ``factor`` times the median of the previous ``window`` finite norms, once
    ``min_history`` of them are known. Non-finite norms are never spikes and are not kept.
    """

    def __init__(self, *, tau: float | None = None, factor: float = 3.0, window: int = 50,
                 min_history: int = 5) -> None:
        if tau is not None:
            check_positive("spike tau", tau, allow_zero=True)
        check_positive("spike factor", factor)
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
    the CPU with ``offload=True`` when device memory is short, and saved with every
    checkpoint, so a resumed run continues the series. NaN for the first step and after a
    skipped (non-finite) step.
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
        cos = _cosine(flat, None if self.prev is None else self.prev.to(flat.device))
        self.prev = flat
        return {"cos_prev": cos}

    def state_dict(self) -> dict[str, Any]:
        return {"prev": None if self.prev is None else self.prev.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prev = state.get("prev")


class AnswerControlProbe(Probe):
    """The length control: the answer-only loss of this step's batch at the same weights.

    ``answer_batches(step)`` returns the step's batch with only the answer tokens labelled
    (same ``input_ids``). Every ``every`` steps (other steps get NaN) the answer-only loss
    (mean over answer tokens, nats) is differentiated with ``torch.autograd.grad`` (``.grad``
    and the update are untouched), giving the same claims as the full loss:

    * ``grad_norm_answer``: L2 norm of that gradient;
    * ``cos_prev_answer``: its cosine with the previous measured step's answer-only
      gradient (consecutive steps when ``every == 1``), NaN when that step was not measured
      (first step, a skipped or failed step) -- as ``cos_prev`` for the full loss;
    * ``spike_answer``: ``grad_norm_answer`` is an absolute (> ``tau``) or relative (>
      ``factor`` x rolling median of the previous answer-only norms) spike
      (:class:`SpikeDetector`, the same settings as the full-loss flags).

    Under a launcher (``state.world`` of several ranks) each rank differentiates its
    :meth:`~thoughtgrad.train.sft.Batch.shard` of the batch, weighted by its share of the
    answer tokens, and the ranks sum loss and gradient in one all-reduce: every rank gets
    the loss and gradient of the whole batch (``loss_fn`` must be a mean over the batch's
    loss tokens, as the default is).
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
        if state.world.distributed:
            loss_value, grads = self._shared_gradient(state, batch)
        else:
            loss = self.loss_fn(state.model, batch)
            grads = torch.autograd.grad(loss, state.params, allow_unused=True)
            loss_value = float(loss.detach())
        flat = _flat_grad(grads, self.offload)  # P
        norm = float(flat.norm())
        spike_abs, spike_rel = self.detector.update(norm)
        row.update(loss_answer=loss_value, grad_norm_answer=norm,
                   spike_answer=spike_abs or spike_rel)
        if math.isfinite(norm):
            row["cos_prev_answer"] = _cosine(flat, None if prev is None else
                                             prev.to(flat.device))
            self.prev, self.prev_step = flat, state.step
        return row

    def _shared_gradient(self, state: TrainState, batch: Batch
                         ) -> tuple[float, list[Tensor | None]]:
        """The loss and gradient of the whole ``batch``, each rank differentiating its
        shard (weight: its share of the loss tokens) and one all-reduce summing them. A
        parameter without a gradient on this rank stays ``None`` (as in one process)."""
        mine = batch.shard(state.world)
        params = state.params
        local: list[Tensor | None]
        if mine.n_rows:
            loss = self.loss_fn(state.model, mine) * (mine.n_tokens / max(batch.n_tokens, 1))
            local = list(torch.autograd.grad(loss, params, allow_unused=True))
        else:  # no row here: this rank adds zero
            loss = torch.zeros((), dtype=torch.float64, device=params[0].device)
            local = [None] * len(params)
        summed = distributed.sum_tensors(
            state.world, [loss.detach().reshape(1),
                          *[torch.zeros_like(p) if g is None else g
                            for g, p in zip(local, params, strict=True)]])
        grads = [None if g is None and mine.n_rows else total
                 for g, total in zip(local, summed[1:], strict=True)]
        return float(summed[0]), grads

    def state_dict(self) -> dict[str, Any]:
        return {"prev": None if self.prev is None else self.prev.cpu(),
                "prev_step": self.prev_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prev, self.prev_step = state.get("prev"), state.get("prev_step")


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
