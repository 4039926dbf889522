# SPDX-License-Identifier: MIT
"""The dynamics probes inside a user's own Hugging Face ``Trainer`` (or TRL ``SFTTrainer``).

:class:`DynamicsCallback` wraps the same probe objects as ``thoughtgrad train``
(:mod:`thoughtgrad.dynamics.probes`) in a ``transformers.TrainerCallback``::

    cb = DynamicsCallback("runs/my_sft", regime="cot", probe_batch=batch)
    trainer = SFTTrainer(..., callbacks=[cb])
    trainer.train()

What it reads, and when:

* gradients in ``on_pre_optimizer_step``: the Trainer has already **clipped** them there
  (``max_grad_norm``), so the per-layer norms computed from them are post-clip. The
  cosine between consecutive gradients is unaffected (global clipping scales the whole
  gradient). The post-clip total is ``grad_norm_post_clip``;
* the **pre-clip** total norm the Trainer logs (``grad_norm`` in ``on_log``) replaces
  ``grad_norm`` in the step's row, with ``loss`` likewise taken from the logs, and the
  spike flags (``spike_abs``, ``spike_rel``, ``spike``) are recomputed from it, against a
  rolling window of the pre-clip norms logged before. ``spike_source`` says which norm a
  row's flags come from: ``pre_clip``, or ``post_clip`` on steps without a log (flags
  from the clipped norm, which can hide a spike). Set ``logging_steps=1`` to have the
  pre-clip norm, the loss and pre-clip flags for every step (otherwise the norm and
  loss are NaN between logs);
* the distance from the initial weights after the step (``on_step_end``); the initial
  weights are saved once in the run directory (``dynamics_init.safetensors``) so a run
  resumed with ``trainer.train(resume_from_checkpoint=True)`` measures from the same origin;
* lambda_max every ``curvature_every`` steps on ``probe_batch`` (a dict or
  :class:`~thoughtgrad.train.sft.Batch` with ``input_ids``, ``labels`` aligned to them,
  optional ``attention_mask``), when one is given. A model loaded with flash attention
  (which has no double backward) is switched to eager attention for the probe and back
  (:func:`~thoughtgrad.dynamics.attention.hvp_attention`).

Rows are written to the run directory's ``dynamics`` and ``layer_grad_norms`` tables when
the Trainer saves a checkpoint and at the end, so a resumed run continues the same tables
without duplicate steps.

Under ``torchrun`` or ``accelerate launch`` (the Trainer's DistributedDataParallel; on a
CPU only with ``use_cpu=True``, else each process trains alone) the callback runs on every
rank and only rank 0 (``RANK`` of the launch) creates the run directory and writes rows.
The gradients it reads are the all-reduced ones, and the Trainer's loss and logs are
global (it scales each rank's loss by the global token count,
``average_tokens_across_devices``), so the rows equal a one-process run with the same
global batch. The curvature probe shares its probe batch among the ranks (every rank runs
it, in step); the other default probes run on rank 0 only.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from thoughtgrad import distributed
from thoughtgrad.dynamics.curvature import CurvatureProbe, check_curvature_method
from thoughtgrad.dynamics.monitor import DynamicsMonitor
from thoughtgrad.dynamics.probes import (
    CosineProbe,
    DistanceProbe,
    GradNormProbe,
    Probe,
    SpikeDetector,
)
from thoughtgrad.runs.store import RunDir
from thoughtgrad.train.sft import Batch, TrainState, total_grad_norm

INIT_FILE = "dynamics_init.safetensors"
NEVER = 1 << 62
"""Flush interval meaning "only on checkpoint saves and at the end"."""


def as_batch(batch: Batch | dict[str, Any]) -> Batch:
    """A :class:`Batch` from a Trainer-style dict (``input_ids``, ``labels``, mask)."""
    if isinstance(batch, Batch):
        return batch
    return Batch(batch["input_ids"], batch["labels"], batch.get("attention_mask"))


class DynamicsCallback(TrainerCallback):
    """Run the dynamics probes in a ``transformers.Trainer`` loop (see the module docstring).

    ``probes`` replaces the default set (gradient norm and spikes, cosine, distance from
    init, and curvature when ``probe_batch`` is given); the pre-clip spike flags use the
    settings of its :class:`GradNormProbe`, when it has one.
    """

    def __init__(self, run_dir: str | Path, *, regime: str = "cot",
                 probe_batch: Batch | dict[str, Any] | None = None, curvature_every: int = 100,
                 curvature_method: str = "lanczos", spike_tau: float | None = None,
                 probes: list[Probe] | None = None) -> None:
        SpikeDetector(tau=spike_tau)  # bad settings fail here, before the Trainer runs
        check_curvature_method(curvature_method)
        if curvature_every < 1:
            raise ValueError(f"curvature_every must be >= 1, got {curvature_every}")
        self.world = distributed.from_env()  # the launch; its rank 0 writes
        self.run = RunDir.create(run_dir, command="trainer-callback", regime=regime) \
            if self.world.main else None
        self.regime = regime
        self._custom = probes
        self._probe_batch = None if probe_batch is None else as_batch(probe_batch)
        self._curv = (curvature_every, curvature_method)
        self._tau = spike_tau
        self.monitor: DynamicsMonitor | None = None
        self._state: TrainState | None = None
        self._pre_clip: SpikeDetector | None = None

    # -- helpers --------------------------------------------------------------------------
    def _initial(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        from safetensors.torch import load_file, save_file

        assert self.run is not None
        path = self.run.path / INIT_FILE
        if path.is_file():
            return load_file(str(path))
        init = {n: p.detach().float().cpu().contiguous() for n, p in model.named_parameters()
                if p.requires_grad}
        save_file(init, str(path))
        return init

    def _probes(self, model: torch.nn.Module, max_steps: int) -> list[Probe]:
        """The probes of this rank: all of them on rank 0 (or a custom set, on every rank);
        on the other ranks of a launch only the curvature probe, whose products they share."""
        if self._custom is not None:
            return self._custom
        probes: list[Probe] = []
        if self.world.main:
            probes += [GradNormProbe(tau=self._tau, norm_source="post_clip",
                                     history_column="grad_norm_post_clip"),
                       CosineProbe(), DistanceProbe(initial=self._initial(model))]
        if self._probe_batch is not None:
            every, method = self._curv
            probes.append(CurvatureProbe(self._probe_batch, every=every, method=method,
                                         last_step=max_steps - 1 if max_steps > 0 else None))
        return probes

    # -- Trainer events -------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       **kwargs: Any) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        probes = self._probes(model, state.max_steps)
        self.monitor = DynamicsMonitor(probes, regime=self.regime, run=self.run,
                                       flush_every=NEVER)
        world = distributed.SINGLE  # ranks that each train alone share no probe
        if args.world_size > 1 and torch.distributed.is_initialized():
            world = distributed.World(rank=args.process_index, size=args.world_size,
                                      local_rank=args.local_process_index)
        self._state = TrainState(step=state.global_step, model=model, params=params,
                                 world=world)
        self.monitor.on_train_start(self._state)
        grad = next((p for p in probes if isinstance(p, GradNormProbe)), None)
        self._pre_clip = None
        if grad is not None:
            d = grad.detector
            self._pre_clip = SpikeDetector(tau=d.tau, factor=d.factor,
                                           window=d.history.maxlen or 50,
                                           min_history=d.min_history)
            prev = self.monitor.previous
            if "grad_norm" in prev and "spike_source" in prev:
                self._pre_clip.seed(prev.loc[prev["spike_source"] == "pre_clip",
                                             "grad_norm"].tolist())

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None,
                              **kwargs: Any) -> None:
        assert self.monitor is not None and self._state is not None
        st = self._state
        st.step, st.loss, st.skipped = state.global_step, math.nan, False
        st.grad_norm = total_grad_norm(st.params)  # post-clip here
        st.extra["loss_pending"] = True
        self.monitor.after_backward(st)
        self.monitor._current["grad_norm_post_clip"] = st.grad_norm
        self.monitor._current["grad_norm"] = math.nan  # the pre-clip value comes from the logs

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        assert self.monitor is not None and self._state is not None
        self._state.step = state.global_step - 1
        self.monitor.on_step_end(self._state)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if self.monitor is None or not logs or not self.monitor.rows:
            return
        row = self.monitor.rows[-1]
        if row["step"] != state.global_step - 1:
            return
        if logs.get("grad_norm") is not None:
            row["grad_norm"] = float(logs["grad_norm"])
            if self._pre_clip is not None:
                spike_abs, spike_rel = self._pre_clip.update(row["grad_norm"])
                row.update(spike_abs=spike_abs, spike_rel=spike_rel,
                           spike=spike_abs or spike_rel, spike_source="pre_clip")
        if "loss" in logs:
            row["loss"] = float(logs["loss"])
        if "learning_rate" in logs:
            row["lr"] = float(logs["learning_rate"])

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.flush()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.monitor is not None:
            self.monitor.flush()
