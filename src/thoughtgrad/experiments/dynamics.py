# SPDX-License-Identifier: MIT
"""The training-dynamics study (seed 000): fine-tune under a supervision regime, probe
every step.

Regimes are data, not code paths; the loop (:func:`thoughtgrad.train.sft.train`) is the
same for all:

==========  ==================================================================================
``cot``     all reasoning steps and the answer supervised (the response unchanged)
``half``    a seeded random half of the reasoning steps removed per sample, the rest and the
            answer supervised (seed 000's "Direct"; ``tasks.variants`` ``half_steps`` with the
            same seed, or the toy ``half`` style); the same steps are dropped in every run
``answer``  the bare answer as the response (the toy lab's ``direct``)
==========  ==================================================================================

"direct" means a bare answer everywhere (the toy lab's ``direct`` regime is ``answer``
here). Run directories written before ``half`` was named call it ``direct``; reports read
them as ``half`` (:func:`thoughtgrad.runs.load.legacy_labels`). A fine-tuned toy model is
exported with the toy lab's words (:func:`toy_export_meta`).

Data (:mod:`thoughtgrad.experiments.dynamics_data`): ``toy:<task>`` (held-out problems of
the toy lab: the evaluation split of the base checkpoint's own split, so the base model
never trained on them) for gpt_mini, or an Alpaca-style JSON/JSONL file (``tasks.records``)
encoded with ``tasks.encode``. Every sample also carries answer-only labels (same token
ids) for the length control.

The run directory gets ``dynamics`` and ``layer_grad_norms`` rows labelled by regime,
trainer checkpoints under ``checkpoints/<regime>`` (re-running the command resumes) and the
final weights under ``model-<regime>``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import nn

from thoughtgrad import distributed
from thoughtgrad.config import identity_of, resolve_device, seed_everything
from thoughtgrad.distributed import World
from thoughtgrad.dynamics.curvature import CurvatureProbe, check_curvature_method
from thoughtgrad.dynamics.monitor import DynamicsMonitor
from thoughtgrad.dynamics.probes import (
    AnswerControlProbe,
    CosineProbe,
    DistanceProbe,
    GradNormProbe,
)
from thoughtgrad.dynamics.surprisal import DEFAULT_TAU, sample_table, token_table
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.dynamics_data import (
    TOY_STYLE,
    Example,
    is_toy,
    load_examples,
    probe_batches,
)
from thoughtgrad.runs.store import RunDir
from thoughtgrad.tasks.tokens import collate
from thoughtgrad.train.sft import (
    Batch,
    TrainConfig,
    TrainResult,
    logits_of,
    make_batches,
    train,
)

log = logging.getLogger(__name__)

REGIMES = ("cot", "half", "answer")
OLD_HALF = "direct"
"""What ``half`` was called before it was renamed (still in older run directories)."""
HF_TRAIN = TrainConfig(steps=1000, batch_size=4, lr=1e-5, warmup_steps=0, min_lr_ratio=1.0,
                       weight_decay=0.0, seed=42, checkpoint_every=100)
"""Seed 000's settings for Hugging Face models: batch 4, lr 1e-5 (constant), seed 42."""
TOY_TRAIN = dataclasses.replace(TrainConfig(), steps=300, warmup_steps=30, checkpoint_every=100)
"""The toy lab's optimiser defaults (lr 1e-3, batch 64, warm-up then cosine), 300 steps
with a tenth of them warm-up."""


@dataclass(frozen=True)
class ProbeConfig:
    """Which probes run and how often; defaults fit a CPU."""

    curvature_every: int = 100
    """steps between lambda_max estimates (also at the first and last step)"""
    curvature_method: str = "lanczos"
    """lanczos, power, or both (both columns side by side)"""
    curvature_tol: float = 1e-3
    """relative change of lambda_max that stops the iteration"""
    curvature_max_iter: int = 30
    """HVP cap per estimate"""
    probe_batch_size: int = 8
    """samples in the fixed curvature probe batch"""
    spike_tau: float | None = None
    """absolute gradient-norm threshold for a spike"""
    spike_factor: float = 3.0
    """relative spike: norm above this times the rolling median"""
    spike_window: int = 50
    """steps in the rolling median of the relative spike"""
    per_layer: bool = True
    """record per-layer gradient norms (the layer_grad_norms table)"""
    answer_control: bool = True
    """the answer-only loss diagnostics at the same weights (a backward per step)"""
    answer_every: int = 1
    """steps between answer-only diagnostics"""
    offload: bool = False
    """keep the previous gradient and initial weights on the CPU"""

    def __post_init__(self) -> None:
        try:
            check_curvature_method(self.curvature_method)
        except ValueError as exc:
            raise UserError(f"probe config: {exc}") from None
        for name in ("curvature_every", "curvature_max_iter", "probe_batch_size",
                     "answer_every", "spike_window"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"probe config: {name} must be an integer >= 1, got {value!r}")
        for name, allow_zero in (("curvature_tol", False), ("spike_factor", False),
                                 ("spike_tau", True)):
            value = getattr(self, name)
            if value is None and name == "spike_tau":
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
                math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
            if not ok:
                raise UserError(f"probe config: {name} must be a finite number "
                                f"{'>=' if allow_zero else '>'} 0, got {value!r}")


@dataclass(frozen=True)
class DynamicsConfig:
    """One fine-tuning run under one regime. ``train=None`` picks the defaults for the
    model kind (:data:`HF_TRAIN` or :data:`TOY_TRAIN`)."""

    model: str
    """gpt_mini checkpoint directory, or a Hugging Face model directory or id"""
    data: str = "toy:addition"
    """toy:addition / toy:fold (held-out toy problems; gpt_mini only), or an Alpaca-style
    JSON/JSONL file"""
    regime: str = "cot"
    """the supervised response: cot = reasoning + answer; half = a seeded half of the
    reasoning steps + answer (seed 000's "Direct"); answer = answer only"""
    train: TrainConfig | None = None
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ..."""
    dtype: str = "fp32"
    """model weights dtype (fp32, bf16, ...)"""
    limit: int | None = None
    """only the first N records of the data file"""
    max_length: int | None = 512
    """token bound per sample"""
    chat_template: bool = False
    """wrap prompts in the tokenizer's chat template (instruct models)"""
    data_seed: int = 0
    """seed of the dropped reasoning steps"""

    def __post_init__(self) -> None:
        check_regime(self.regime)


def check_regime(regime: str) -> None:
    """Fail with one line on a regime the study does not know (naming ``direct``'s new
    name, ``half``)."""
    if regime == OLD_HALF:
        raise UserError(f"regime {OLD_HALF!r} is now called 'half' (half the reasoning steps); "
                        "the bare answer is 'answer'")
    if regime not in REGIMES:
        raise UserError(f"unknown regime {regime!r}; choose one of {', '.join(REGIMES)}")


# -- the run ------------------------------------------------------------------------------
def build_probes(cfg: ProbeConfig, *, examples: Sequence[Example], pad_id: int,
                 train_cfg: TrainConfig, seed: int, initial: dict[str, torch.Tensor]
                 ) -> list[Any]:
    """The probe objects of one run (shared with the Trainer callback)."""
    probe_full, probe_answer = probe_batches(examples, cfg.probe_batch_size, pad_id)
    probes: list[Any] = [
        GradNormProbe(tau=cfg.spike_tau, factor=cfg.spike_factor, window=cfg.spike_window,
                      per_layer=cfg.per_layer),
        CosineProbe(offload=cfg.offload),
        DistanceProbe(initial=initial, offload=cfg.offload),
        CurvatureProbe(probe_full, every=cfg.curvature_every, method=cfg.curvature_method,
                       tol=cfg.curvature_tol, max_iter=cfg.curvature_max_iter, seed=seed,
                       answer_batch=probe_answer if cfg.answer_control else None,
                       last_step=train_cfg.steps - 1),
    ]
    if cfg.answer_control:
        probes.append(AnswerControlProbe(
            make_batches([e.answer for e in examples], batch_size=train_cfg.batch_size,
                         seed=train_cfg.seed, pad_id=pad_id), every=cfg.answer_every,
            tau=cfg.spike_tau, factor=cfg.spike_factor, window=cfg.spike_window,
            offload=cfg.offload))
    return probes


TOY_SPLIT_KEYS = ("task", "train_size", "train_ks", "eval_ks", "eval_per_k", "split_seed")
"""``config.json`` extras of a toy checkpoint that fix its task and train/held-out split."""


def toy_export_meta(cfg: DynamicsConfig) -> dict[str, Any]:
    """``config.json`` extras of a fine-tuned gpt_mini (``model-<regime>``).

    The base checkpoint's task and split (:data:`TOY_SPLIT_KEYS`), so ``toy:<task>`` data
    read from the exported model rebuilds the same held-out problems; the task is the
    ``toy:<task>`` of ``cfg.data`` when given. ``regime`` and ``style`` name the fine-tuned
    response style in the toy lab's words (``answer`` is the toy lab's ``direct``), so the toy
    commands evaluate the model in the style it was tuned on; ``dynamics_regime`` and
    ``base_checkpoint`` record what ran. Empty when the base is not a toy-lab checkpoint.
    """
    from thoughtgrad.experiments.toy import REGIME_STYLE
    from thoughtgrad.models.gpt_mini import read_checkpoint_meta

    base = read_checkpoint_meta(cfg.model)
    if "task" not in base:
        return {}
    style = TOY_STYLE[cfg.regime]
    meta = {k: base[k] for k in TOY_SPLIT_KEYS if k in base}
    if cfg.data.startswith("toy:"):
        meta["task"] = cfg.data[4:]
    return meta | {"regime": next(r for r, st in REGIME_STYLE.items() if st == style),
                   "style": style, "dynamics_regime": cfg.regime,
                   "base_checkpoint": str(cfg.model)}


def run_dynamics(cfg: DynamicsConfig, run: RunDir, *,
                 progress: Callable[[int, int, float], None] | None = None,
                 world: World = distributed.SINGLE) -> tuple[TrainResult, pd.DataFrame]:
    """Fine-tune ``cfg.model`` on ``cfg.data`` under ``cfg.regime`` with every probe.

    Resumes from ``checkpoints/<regime>`` when present. Returns the loop's result and this
    regime's ``dynamics`` rows (all steps written so far).

    Under a launcher every rank of ``world`` calls this with the same ``cfg`` and run
    directory (created by rank 0 before): the loop is data parallel
    (:func:`~thoughtgrad.train.sft.train`), each rank on ``cuda:LOCAL_RANK`` or the CPU,
    and only rank 0 writes the manifest, tables, checkpoints and final weights; the other
    ranks return an empty frame.
    """
    from thoughtgrad.models.hf import load_model

    if cfg.regime == "half" and f"dynamics_{OLD_HALF}" in run.manifest():
        raise UserError(f"{run.path} holds the half regime under its old name {OLD_HALF!r}; "
                        "give a new --out (reports read the old name as half)")
    device = resolve_device(distributed.device_for(world, cfg.device))
    model = load_model(cfg.model, dtype=cfg.dtype, device=str(device))
    toy = is_toy(model)
    train_cfg = cfg.train or (TOY_TRAIN if toy else HF_TRAIN)
    seed_everything(train_cfg.seed)
    examples, pad_id, failed = load_examples(model, cfg.model, cfg.data, cfg.regime,
                                             seed=cfg.data_seed, limit=cfg.limit,
                                             max_length=cfg.max_length,
                                             chat_template=cfg.chat_template)
    if world.main:
        run.replace_rows("dynamics_failed", "regime", cfg.regime,
                         pd.DataFrame([{"regime": cfg.regime, **f} for f in failed],
                                      columns=["regime", "sample_id", "source", "reason"]))
        run.update_manifest(**{f"dynamics_{cfg.regime}": {
            "config": dataclasses.asdict(dataclasses.replace(cfg, train=train_cfg)),
            "samples": len(examples), "failed": len(failed)}})
    initial = {n: p.detach().float().clone().cpu() if cfg.probes.offload
               else p.detach().float().clone() for n, p in model.named_parameters()}
    probes = build_probes(cfg.probes, examples=examples, pad_id=pad_id, train_cfg=train_cfg,
                          seed=train_cfg.seed, initial=initial)
    monitor = DynamicsMonitor(probes, regime=cfg.regime, run=run if world.main else None,
                              flush_every=train_cfg.checkpoint_every or 50)
    batches = make_batches([e.full for e in examples], batch_size=train_cfg.batch_size,
                           seed=train_cfg.seed,
                           pad_id=pad_id)
    model.train()
    result = train(train_cfg, model, batches, [monitor], device=device,
                   checkpoint_dir=run.path / "checkpoints" / cfg.regime, progress=progress,
                   world=world)
    if not world.main:
        return result, pd.DataFrame()
    if result.stopped_reason is None:
        out = run.path / f"model-{cfg.regime}"
        if toy:
            model.save(out, extra=toy_export_meta(cfg))
        else:
            model.save_pretrained(out)
    rows = run.read("dynamics")
    return result, rows[rows["regime"] == cfg.regime].sort_values("step")


# -- surprisal ----------------------------------------------------------------------------
def measure_surprisal(model: nn.Module, examples: Sequence[Example], *, pad_id: int,
                      condition: str, device: torch.device | str, batch_size: int = 8,
                      tau: float = DEFAULT_TAU) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-token surprisal (bits), ``p_true`` and the Lemma 1 logit-gradient norm of
    ``model`` on every loss-carrying token of ``examples`` (their full labels: the prompt
    is masked), and the per-sample totals with the count of tokens above ``tau``.

    Returns the ``surprisal`` rows (:func:`thoughtgrad.dynamics.surprisal.token_table`) and
    the ``surprisal_samples`` rows (:func:`~thoughtgrad.dynamics.surprisal.sample_table`),
    every row labelled ``condition``. Forward passes only, without autograd, in batches of
    ``batch_size`` examples moved to ``device``; the model's train/eval mode is left as is.
    """
    parts = []
    with torch.no_grad():
        for lo in range(0, len(examples), batch_size):
            chunk = examples[lo: lo + batch_size]
            ids, labels, mask = collate([e.full for e in chunk], pad_id)
            batch = Batch(ids, labels, mask).to(device)
            logits = logits_of(model, batch)  # B T V
            parts.append(token_table(logits, batch.labels,
                                     sample_ids=[e.sample_id for e in chunk],
                                     conditions=[condition] * len(chunk)))
    tokens = pd.concat(parts, ignore_index=True)
    return tokens, sample_table(tokens, tau=tau)


# -- identity -----------------------------------------------------------------------------
def dynamics_identity(cfg: DynamicsConfig) -> dict[str, Any]:
    """The settings every regime of one run directory must share (stored as the run's
    identity, :meth:`~thoughtgrad.runs.store.RunDir.create`): model, data, dtype, the
    resolved training loop and the probes -- all but the regime (several share one
    directory), the device, and what does not change a number (checkpoint interval,
    offloading)."""
    return identity_of(cfg, drop=("regime", "device", "train.checkpoint_every",
                                  "probes.offload"))
