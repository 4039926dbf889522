# SPDX-License-Identifier: MIT
"""The test-time compute comparison (seed 004, with seed 003's CoT as one knob).

On the same held-out problems of each task family, accuracy per K against compute for
four knobs, each from its own trained run (all trained by the one SFT loop of
:mod:`thoughtgrad.train.sft`; only data and architecture differ):

=============  =====================================================  ===============
knob           models and decoding                                    ``n`` is
=============  =====================================================  ===============
``parameters`` direct models with L = 2, 4, 8 blocks, greedy           L
``tokens``     the CoT model (L = ``cot_layers``), greedy              1
``samples``    majority vote / pass@n over sampled responses of the    samples
               direct and the CoT model with L = ``cot_layers``
``loops``      a looped direct model (``loop_layers`` blocks applied   r
               r times, trained at ``loop_train``), greedy at each r
=============  =====================================================  ===============

Every row goes into the ``scale`` table (columns in ``docs/architecture.md``). A
finished (task, model) cell is skipped when the command is re-run; unfinished training
resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from thoughtgrad.config import identity_of, resolve_device
from thoughtgrad.errors import UserError
from thoughtgrad.evaluate.scaling import (
    SampleConfig,
    greedy_study,
    label_scale_rows,
    loop_study,
    sample_study,
)
from thoughtgrad.experiments.toy import REGIME_STYLE, ToyConfig, split_for, train_regime
from thoughtgrad.models.gpt_mini import GPTMini
from thoughtgrad.runs.store import RunDir
from thoughtgrad.tasks.toy import Split, get_task
from thoughtgrad.train.sft import TrainConfig

log = logging.getLogger(__name__)

TABLE = "scale"


KNOBS_TRAIN = TrainConfig(steps=1600, batch_size=32, warmup_steps=160, checkpoint_every=400)
"""The loop every knob model trains with (the toy lab's AdamW, lr 1e-3, cosine to 0.1);
every model gets the same steps, batch and data.

Sized on this project's 2-core CPU for all ten models (two task families x direct
L = 2, 4, 8, CoT L = 4, looped L = 2 trained at r = 2) to keep their training under 15
minutes together. Measured there (two threads, the packed training path): 800 x 32 took
379 s of training for all ten models (the CoT models about 60 % of it), so 1600 x 32 is
about 12.5 minutes. At 800 x 32 the CoT model was still undertrained (addition K = 6:
55 %, against 100 % after the toy study's 2000 x 64); at equal examples seen, more smaller
steps learn the trace faster than fewer large ones (400 x 64 left it at 25 %)."""


def _default_toy() -> ToyConfig:
    return dataclasses.replace(ToyConfig(), eval_per_k=100, train=KNOBS_TRAIN)


@dataclass(frozen=True)
class KnobsConfig:
    """Which models each knob trains and how they are evaluated.

    ``toy`` holds everything shared (split, width, training loop); the per-model depth
    and loop count are set from ``layers``, ``cot_layers``, ``loop_layers`` and
    ``loop_train``.
    """

    tasks: tuple[str, ...] = ("addition", "fold")
    """task families"""
    layers: tuple[int, ...] = (2, 4, 8)
    """depths L of the direct models (parameters)"""
    cot_layers: int = 4
    """depth of the CoT model and of the sampled direct model"""
    loop_layers: int = 2
    """blocks in the looped group"""
    loop_train: int = 2
    """loops r at training"""
    loops: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    """loop counts r at evaluation"""
    sampling: SampleConfig = field(default_factory=SampleConfig)
    toy: ToyConfig = field(default_factory=_default_toy)

    def __post_init__(self) -> None:
        for t in self.tasks:
            get_task(t)
        for name in ("cot_layers", "loop_layers", "loop_train"):
            if getattr(self, name) < 1:
                raise UserError(f"knobs config: {name} must be >= 1, got {getattr(self, name)}")
        for L in self.layers:
            if L < 1:
                raise UserError(f"knobs config: layers must be >= 1, got {L}")
        for r in self.loops:
            if r < 1:
                raise UserError(f"loops (r) must be >= 1, got {r}")


@dataclass(frozen=True)
class ModelSpec:
    """One trained model of the comparison."""

    label: str
    regime: str
    n_layer: int
    n_loops: int


def knobs_identity(cfg: KnobsConfig) -> dict:
    """The settings a resumed knobs run must share with the run it continues: everything
    but the task families (a new family adds cells), the device and the checkpoint
    interval, which change no number."""
    return identity_of(cfg, drop=("tasks", "toy.device", "toy.train.checkpoint_every"))


def model_specs(cfg: KnobsConfig) -> list[ModelSpec]:
    """The models to train: direct at every L, CoT at ``cot_layers``, one looped model."""
    specs = [ModelSpec(f"direct-L{L}", "direct", L, 1) for L in cfg.layers]
    if cfg.cot_layers not in cfg.layers:
        specs.append(ModelSpec(f"direct-L{cfg.cot_layers}", "direct", cfg.cot_layers, 1))
    specs.append(ModelSpec(f"cot-L{cfg.cot_layers}", "cot", cfg.cot_layers, 1))
    specs.append(ModelSpec(f"looped-L{cfg.loop_layers}-r{cfg.loop_train}", "direct",
                           cfg.loop_layers, cfg.loop_train))
    return specs


def spec_config(cfg: KnobsConfig, task: str, spec: ModelSpec) -> ToyConfig:
    model = dataclasses.replace(cfg.toy.model, n_layer=spec.n_layer, n_loops=spec.n_loops)
    return dataclasses.replace(cfg.toy, task=task, model=model, regimes=(spec.regime,))


def evaluate_spec(cfg: KnobsConfig, toy: ToyConfig, split: Split, spec: ModelSpec,
                  model: GPTMini) -> pd.DataFrame:
    """The knob rows of one trained model (see the module table)."""
    device = resolve_device(toy.device)
    model = model.to(device).eval()
    task = get_task(toy.task)
    style = REGIME_STYLE[spec.regime]
    parts = []
    if spec.n_loops > 1:
        parts.append(loop_study(model, task, split.eval, style, cfg.loops, device=device))
    elif spec.regime == "cot":
        parts.append(greedy_study(model, task, split.eval, style, knob="tokens", n=1,
                                  device=device))
    elif spec.n_layer in cfg.layers:
        parts.append(greedy_study(model, task, split.eval, style, knob="parameters",
                                  n=spec.n_layer, device=device))
    if spec.n_loops == 1 and spec.n_layer == cfg.cot_layers:
        parts.append(sample_study(model, task, split.eval, style, cfg.sampling, device=device))
    df = pd.concat(parts, ignore_index=True)
    labels = {"task": toy.task, "model": spec.label, "regime": spec.regime,
              "n_layer": spec.n_layer, "n_loops_train": spec.n_loops,
              "params": model.num_params()}
    return label_scale_rows(df, labels, temperature=cfg.sampling.temperature,
                            train_ks=toy.train_ks)


def run_knobs(cfg: KnobsConfig, run: RunDir, *,
              progress_factory: Callable[[str, int], Callable[[int, int, float], None]]
              | None = None) -> pd.DataFrame:
    """Train and evaluate every (task, model) cell into ``run``; resumable. Returns the
    whole ``scale`` table."""
    done: set[tuple[str, str]] = set()
    if run.has_table(TABLE):
        prev = run.read(TABLE, columns=["task", "model"]).drop_duplicates()
        done = {(t, m) for t, m in prev.itertuples(index=False)}
    for task in cfg.tasks:
        split: Split | None = None
        for spec in model_specs(cfg):
            if (task, spec.label) in done:
                continue
            toy = spec_config(cfg, task, spec)
            split = split or split_for(toy)
            name = f"{task}-{spec.label}"
            bar = progress_factory(f"train {name}", toy.train.steps) if progress_factory else None
            t0 = time.perf_counter()
            model, result = train_regime(toy, split, spec.regime,
                                         Path(run.path) / "checkpoints" / name, progress=bar)
            if result.stopped_reason:
                raise UserError(f"training {name} stopped: {result.stopped_reason}")
            train_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            rows = evaluate_spec(cfg, toy, split, spec, model)
            eval_s = time.perf_counter() - t1
            log.info("%s: trained in %.0f s, evaluated in %.0f s", name, train_s, eval_s)
            run.append("timings", [{
                "task": task, "model": spec.label, "steps": toy.train.steps,
                "train_seconds": train_s, "steps_run": len(result.losses),
                "final_loss": result.final_loss, "eval_seconds": eval_s,
                "params": model.num_params()}])
            run.append(TABLE, rows)
    return run.read(TABLE)
