# SPDX-License-Identifier: MIT
"""The loop callback that runs the dynamics probes (:mod:`thoughtgrad.dynamics.probes`,
:mod:`thoughtgrad.dynamics.curvature`) and writes one ``dynamics`` row per step.

:class:`DynamicsMonitor` is the callback the loop sees: it merges the probes' columns with
the loop's own (regime, step, loss, lr, skipped, status) into one row per step and appends
rows to a :class:`~thoughtgrad.runs.store.RunDir` in shards, skipping steps already
written (a resumed run does not duplicate rows). A probe that raises at a step (out of
memory, a NaN in the HVP, anything but an interrupt) is recorded in that row's ``status``
and training goes on; a bad *setting* is refused when the probe is built, before training.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from thoughtgrad.dynamics.probes import CosineProbe, GradNormProbe, Probe, Row, failure_status
from thoughtgrad.train.sft import TrainState

log = logging.getLogger(__name__)


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

    def state_dict(self) -> dict[str, Any]:
        """The probes' checkpoint state, in probe order."""
        return {"probes": [p.state_dict() for p in self.probes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for probe, kept in zip(self.probes, state.get("probes", []), strict=False):
            probe.load_state_dict(kept)

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
