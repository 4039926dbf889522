# SPDX-License-Identifier: MIT
"""The flagship demo's settings: one frozen dataclass per stage composed into
:class:`DemoConfig`, and :func:`quick_config` for a smoke run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from thoughtgrad.config import identity_of
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.toy import ToyConfig

STAGES: tuple[str, ...] = ("toy", "spectra", "dynamics", "scale", "report")
REGIMES: tuple[str, ...] = ("cot", "half", "answer")
RESUME_FREE: tuple[str, ...] = ("skip", "device", "figures", "title")
"""DemoConfig fields that may differ between a demo and its resumption."""


# -- configuration ----------------------------------------------------------------------------
TINY_MODEL = "tiny"
"""``SpectraStage.model`` value for the tiny random-init llama built by the stage itself."""
SPECTRA_MODEL = "pkg:smollm2-135m-instruct"
"""The trained model the full demo measures (issue 11): SmolLM2-135M-Instruct, Q4_1
dequantised, with its chat template."""
SPECTRA_CONTROLS: tuple[str, ...] = ("sum", "random")
"""The controls beside the mean-loss measurement: ``sum`` derived from it (no second
measurement), ``random`` the same architecture untrained (measured)."""


@dataclass(frozen=True)
class SpectraStage:
    """The spectra stage: the model it measures, its data, controls and samples per file.

    The stage is a ``thoughtgrad grid`` over ``dataset`` alone (six files: none /
    simplified / detailed x correct / irrelevant) with ``controls``. ``model`` ``"tiny"``
    builds a random-init llama of the sizes below with a byte-level BPE of ``vocab_size``
    trained on every text of the six files (so responses are not truncated at
    ``max_positions``); a packaged model that is not installed falls back to it with a
    note. ``data_dir`` ``None`` means ``<repo>/../shared/data`` (see
    :func:`~thoughtgrad.experiments.demo_stages.default_data_dir`).
    ``limit`` 8 is sized for the 30-minute demo on a quiet 2-core CPU: a gsm8k sample
    with the chat template is ~255 tokens on average over the six files (88 none, ~200
    simplified, ~480 detailed), SmolLM2's measurement ~0.013 s per token with 2 threads
    and sdpa (about 1.3 x a plain forward+backward: 5.3 s at 500 tokens), so 6 x 8 samples
    measured twice (trained, random init; the sum control is derived) take ~5.5 min plus
    loading (dequantising once on a fresh clone: tens of seconds). Measured on a fresh
    clone of a quiet 2-core CPU: the spectra stage 291 s with dequantising, the whole demo
    15.5 min set-up included (toy 344 s, dynamics 203 s, scale 9 s, report 23 s, set-up
    ~1 min). A loaded machine is several times slower (load ~7: ~70 s per sample).
    """

    model: str = SPECTRA_MODEL
    """model measured: a pkg: name, a model directory, or tiny (a random-init llama)"""
    dataset: str = "gsm8k"
    limit: int = 8
    """records read per spectra data file"""
    data_dir: str | None = None
    """folder holding layer_gradient/"""
    controls: tuple[str, ...] = SPECTRA_CONTROLS
    """controls beside the mean loss: sum (derived), answer, random (measured)"""
    attn_implementation: str = "sdpa"
    """eager or sdpa (sdpa keeps no per-layer attention weights for the backward)"""
    arch: str = "llama"
    hidden_size: int = 64
    intermediate_size: int = 128
    layers: int = 6
    heads: int = 4
    kv_heads: int = 2
    vocab_size: int = 4096
    max_positions: int = 2048
    batch_tokens: int = 2048

    def __post_init__(self) -> None:
        for name in ("limit", "hidden_size", "intermediate_size", "layers", "heads", "kv_heads",
                     "vocab_size", "max_positions", "batch_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"demo spectra: {name} must be >= 1, got {getattr(self, name)}")
        if self.heads % self.kv_heads or self.hidden_size % self.heads:
            raise UserError(f"demo spectra: heads {self.heads} must divide hidden_size "
                            f"{self.hidden_size} and be a multiple of kv_heads {self.kv_heads}")
        bad = [c for c in self.controls if c not in ("sum", "answer", "random")]
        if bad:
            raise UserError(f"demo spectra: unknown control(s) {', '.join(bad)}; choose from "
                            "sum, answer, random")
        if self.attn_implementation not in ("eager", "sdpa"):
            raise UserError(f"demo spectra: attn_implementation must be eager or sdpa, got "
                            f"{self.attn_implementation!r}")

    @property
    def tiny(self) -> bool:
        return self.model == TINY_MODEL


@dataclass(frozen=True)
class DynamicsStage:
    """The dynamics stage: fine-tune the toy ``base_regime`` checkpoint per regime.

    ``limit`` held-out problems are fine-tuned on; surprisal is measured on the next
    ``surprisal_samples`` problems of the same held-out list (never tuned on when enough
    exist).
    """

    regimes: tuple[str, ...] = REGIMES
    base_regime: str = "cot"
    steps: int = 300
    """fine-tuning steps per regime"""
    batch_size: int = 64
    limit: int = 400
    curvature_every: int = 100
    curvature_max_iter: int = 20
    probe_batch_size: int = 8
    surprisal_samples: int = 100

    def __post_init__(self) -> None:
        for r in self.regimes:
            if r not in REGIMES:
                raise UserError(f"demo dynamics: unknown regime {r!r}; choose from "
                                f"{', '.join(REGIMES)}")
        for name in ("steps", "batch_size", "limit", "curvature_every", "curvature_max_iter",
                     "probe_batch_size", "surprisal_samples"):
            if getattr(self, name) < 1:
                raise UserError(f"demo dynamics: {name} must be >= 1, got "
                                f"{getattr(self, name)}")


@dataclass(frozen=True)
class ScaleStage:
    """The test-time compute stage: sample budgets over ``per_k`` held-out problems per K
    of each toy checkpoint (``None``: all of them)."""

    samples: tuple[int, ...] = (1, 4, 16)
    """test-time sample budgets n"""
    temperature: float = 0.8
    per_k: int | None = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.samples or min(self.samples) < 1:
            raise UserError(f"demo scale: samples must be >= 1, got {self.samples}")
        if self.temperature <= 0:
            raise UserError(f"demo scale: temperature must be > 0, got {self.temperature}")
        if self.per_k is not None and self.per_k < 1:
            raise UserError(f"demo scale: per_k must be >= 1, got {self.per_k}")


@dataclass(frozen=True)
class DemoConfig:
    """The whole demo; the defaults are the studies' own, sized for a CPU.

    ``skip`` leaves stages out; ``figures`` false writes the report without figures;
    ``title`` heads the report.
    """

    toy: ToyConfig = field(default_factory=ToyConfig)
    spectra: SpectraStage = field(default_factory=SpectraStage)
    dynamics: DynamicsStage = field(default_factory=DynamicsStage)
    scale: ScaleStage = field(default_factory=ScaleStage)
    skip: tuple[str, ...] = ()
    """stages to leave out"""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ..."""
    figures: bool = True
    title: str = "thoughtgrad demo"

    def __post_init__(self) -> None:
        for name in self.skip:
            if name not in STAGES:
                raise UserError(f"--skip {name}: unknown stage; choose from {', '.join(STAGES)}")
        if self.dynamics.base_regime not in self.toy.regimes:
            raise UserError(f"demo dynamics: base_regime {self.dynamics.base_regime!r} is not "
                            f"trained by the toy stage ({', '.join(self.toy.regimes)})")

    def identity(self) -> dict[str, Any]:
        """The settings a resumed demo must share with the demo it continues."""
        return json.loads(json.dumps(identity_of(self, drop=RESUME_FREE), default=str))


def quick_config(base: DemoConfig | None = None) -> DemoConfig:
    """Every stage shrunk for a smoke run of a minute or two on a CPU: toy 200 steps of
    batch 32 on 500 problems, spectra of the tiny random-init llama on 3 samples per file
    (summed-loss control only), dynamics 30 steps, scale 10 problems per K."""
    base = base or DemoConfig()
    train = dataclasses.replace(base.toy.train, steps=200, batch_size=32, warmup_steps=20,
                                checkpoint_every=100)
    toy = dataclasses.replace(base.toy, train_size=500, eval_per_k=20, train=train)
    return dataclasses.replace(
        base, toy=toy, spectra=dataclasses.replace(base.spectra, model=TINY_MODEL, limit=3,
                                    controls=("sum",)),
        dynamics=dataclasses.replace(base.dynamics, steps=30, batch_size=32, limit=96,
                                     curvature_every=15, curvature_max_iter=10,
                                     surprisal_samples=32),
        scale=dataclasses.replace(base.scale, samples=(1, 4), per_k=10),
        title="thoughtgrad demo --quick (a smoke run: the models are undertrained, so the "
              "numbers are not the studies' results)")
