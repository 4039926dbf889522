# SPDX-License-Identifier: MIT
"""The flagship demo: every study on embedded defaults, then one offline ``report.html``.

Stages, each writing its own run directory under the demo directory ``<out>``:

==========  =======================================================================
``toy``     the toy CoT lab (seed 003): direct vs CoT gpt_mini on addition -> ``toy/``
``spectra`` layer spectra (seeds 001/002) of a tiny random-init llama (grouped-query
            attention) with a tokenizer trained on the data's own texts, over the shared
            gsm8k files (none / simplified / detailed CoT, correct and irrelevant
            responses) -> ``spectra/``; the length control with a summed loss (no
            1/length factor) -> ``spectra-sum/``; the model in ``models/``
``dynamics``fine-tune the toy CoT checkpoint on held-out problems under each regime
            with every probe (seed 000) -> ``dynamics-<regime>/``, plus per-token
            surprisal of each fine-tuned model on problems it was not tuned on
``scale``   test-time compute (seed 004): greedy, majority vote and pass@n of the toy
            checkpoints -> ``scale/``
``report``  one self-contained ``report.html`` over all of them
==========  =======================================================================

Every stage is resumable: the stages' own resume logic is reused (finished toy cells,
measured spectra samples, dynamics checkpoints, scored scale models are skipped), and a
stage recorded as completed in ``<out>/manifest.json`` is not run again. A stage whose
inputs are absent (no shared data, a study not installed, --skip) is recorded with a
note and the demo goes on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thoughtgrad.config import identity_of
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.demo_stages import (
    STAGE_FUNCS,
    ProgressFactory,
    StageContext,
    StageOutcome,
)
from thoughtgrad.experiments.toy import ToyConfig
from thoughtgrad.runs.store import RunDir

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("toy", "spectra", "dynamics", "scale", "report")
REGIMES: tuple[str, ...] = ("cot", "direct", "answer")
RESUME_FREE: tuple[str, ...] = ("skip", "device", "figures", "title")
"""DemoConfig fields that may differ between a demo and its resumption."""


# -- configuration ----------------------------------------------------------------------------
@dataclass(frozen=True)
class SpectraStage:
    """The spectra stage: data, the tiny llama it measures, and the samples per file.

    ``data_dir`` ``None`` means ``<repo>/../shared/data`` (see
    :func:`~thoughtgrad.experiments.demo_stages.default_data_dir`).
    The tokenizer is a byte-level BPE of ``vocab_size`` trained on every text of the six
    files, so responses are not truncated at ``max_positions``.
    """

    dataset: str = "gsm8k"
    limit: int = 20
    data_dir: str | None = None
    arch: str = "llama"
    hidden_size: int = 64
    intermediate_size: int = 128
    layers: int = 6
    heads: int = 4
    kv_heads: int = 2
    vocab_size: int = 4096
    max_positions: int = 2048
    batch_tokens: int = 4096

    def __post_init__(self) -> None:
        for name in ("limit", "hidden_size", "intermediate_size", "layers", "heads", "kv_heads",
                     "vocab_size", "max_positions", "batch_tokens"):
            if getattr(self, name) < 1:
                raise UserError(f"demo spectra: {name} must be >= 1, got {getattr(self, name)}")
        if self.heads % self.kv_heads or self.hidden_size % self.heads:
            raise UserError(f"demo spectra: heads {self.heads} must divide hidden_size "
                            f"{self.hidden_size} and be a multiple of kv_heads {self.kv_heads}")


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
    device: str = "auto"
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
    batch 32 on 500 problems, spectra 3 samples per file, dynamics 30 steps, scale 10
    problems per K."""
    base = base or DemoConfig()
    train = dataclasses.replace(base.toy.train, steps=200, batch_size=32, warmup_steps=20,
                                checkpoint_every=100)
    toy = dataclasses.replace(base.toy, train_size=500, eval_per_k=20, train=train)
    return dataclasses.replace(
        base, toy=toy, spectra=dataclasses.replace(base.spectra, limit=3),
        dynamics=dataclasses.replace(base.dynamics, steps=30, batch_size=32, limit=96,
                                     curvature_every=15, curvature_max_iter=10,
                                     surprisal_samples=32),
        scale=dataclasses.replace(base.scale, samples=(1, 4), per_k=10),
        title="thoughtgrad demo --quick (a smoke run: the models are undertrained, so the "
              "numbers are not the studies' results)")


# -- results ----------------------------------------------------------------------------------
@dataclass
class DemoResult:
    """The demo directory, every stage's outcome, the report page and its comparison."""

    out: Path
    stages: list[StageOutcome]
    report: Path | None = None
    comparison: Any = None

    @property
    def failed(self) -> list[StageOutcome]:
        return [s for s in self.stages if s.status == "failed"]


def stage_runs(out: Path) -> list[Path]:
    """The stage run directories present under ``out``, in stage order."""
    names = ["toy", "spectra", "spectra-sum", *(f"dynamics-{r}" for r in REGIMES), "scale"]
    return [out / n for n in names if (out / n / "manifest.json").is_file()]


def write_demo_report(out: Path, notes: list[str], *, title: str = "thoughtgrad demo",
                      figures: bool = True) -> tuple[Path, Any]:
    """One offline page over every stage run (figures in ``<out>/figures``); the demo's
    own notes (skipped stages) are listed with the comparison's."""
    from thoughtgrad.report import figures as figs
    from thoughtgrad.report.compare import compare_runs
    from thoughtgrad.report.html import build_html

    runs = stage_runs(out)
    if not runs:
        raise UserError(f"{out}: no stage produced a run directory; nothing to report")
    comp = compare_runs(runs)
    comp.notes[:0] = notes
    fig = figs.render_all(comp, out / "figures") if figures else {}
    page = out / "report.html"
    tmp = page.with_name(".report.html.tmp")
    tmp.write_text(build_html(comp, fig, title=title), encoding="utf-8")
    tmp.replace(page)
    return page, comp


# -- the demo ---------------------------------------------------------------------------------
def run_demo(cfg: DemoConfig, out: str | Path, *,
             message: Callable[[str], None] | None = None,
             progress_factory: ProgressFactory | None = None) -> DemoResult:
    """Run every stage not yet completed into ``out`` and write ``out/report.html``.

    ``message`` receives one line per stage (``[demo 2/5] spectra: ...``);
    ``progress_factory(name, total)`` makes a progress callback for long loops. A failing
    stage is recorded (status ``failed`` with its reason) and the later stages still run;
    the caller decides what a failure means (:attr:`DemoResult.failed`).
    """
    out = Path(out)
    say = message or (lambda _line: None)
    before = RunDir(out).manifest() if (out / "manifest.json").is_file() else {}
    if before and before.get("command") != "demo":
        raise UserError(f"{out}: holds a {before.get('command')!r} run, not a demo; use a "
                        "new --out")
    demo = RunDir.create(out, command="demo", config=cfg, identity=cfg.identity())
    recorded: dict[str, dict[str, Any]] = dict(before.get("stages") or {})
    ctx = StageContext(cfg, out, say, progress_factory)
    outcomes: list[StageOutcome] = []
    n = len(STAGES)

    def record(o: StageOutcome) -> None:
        outcomes.append(o)
        recorded[o.name] = {"status": o.status, "note": o.note, "seconds": round(o.seconds, 1),
                            "runs": [str(p) for p in o.runs]}
        demo.update_manifest(stages=recorded)
        if o.note and o.status != "completed":
            ctx.notes.append(f"demo stage {o.name} {o.status}: {o.note}")

    try:
        for i, name in enumerate(STAGES[:-1], start=1):
            tag = f"[demo {i}/{n}] {name}:"
            if name in cfg.skip:
                say(f"{tag} skipped (--skip)")
                record(StageOutcome(name, "skipped", note="--skip"))
                continue
            prev = recorded.get(name, {})
            if prev.get("status") == "completed":
                say(f"{tag} already completed; skipped")
                record(StageOutcome(name, "completed", [Path(p) for p in prev.get("runs", [])],
                                    seconds=float(prev.get("seconds", 0.0)),
                                    resumed_from_done=True))
                continue
            say(f"{tag} {_describe(name, cfg)}")
            recorded[name] = {"status": "running"}
            demo.update_manifest(stages=recorded)
            t0 = time.perf_counter()
            try:
                o = STAGE_FUNCS[name](ctx)
            except KeyboardInterrupt:
                recorded[name] = {"status": "interrupted"}
                raise
            except Exception as exc:  # noqa: BLE001 - a failed stage must not stop the others
                log.debug("stage %s failed", name, exc_info=True)
                o = StageOutcome(name, "failed", note=f"{type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}")
            o.seconds = time.perf_counter() - t0
            if o.status == "completed":
                say(f"{tag} done in {o.seconds:.0f} s -> "
                    f"{', '.join(str(p) for p in o.runs)}")
            else:
                say(f"{tag} {o.status}: {o.note}")
            record(o)
        report = _report_stage(ctx, recorded, outcomes, n)
    except BaseException as exc:
        demo.update_manifest(stages=recorded)
        demo.set_status("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                        error=str(exc))
        raise
    result = DemoResult(out, outcomes, *report)
    demo.set_status("failed" if result.failed else "completed", stages=recorded,
                    report=str(result.report) if result.report else None)
    return result


def _report_stage(ctx: StageContext, recorded: dict[str, dict[str, Any]],
                  outcomes: list[StageOutcome], n: int) -> tuple[Path | None, Any]:
    tag = f"[demo {n}/{n}] report:"
    page = ctx.out / "report.html"
    if "report" in ctx.cfg.skip:
        ctx.message(f"{tag} skipped (--skip)")
        outcomes.append(StageOutcome("report", "skipped", note="--skip"))
        recorded["report"] = {"status": "skipped", "note": "--skip"}
        return None, None
    ctx.message(f"{tag} one offline page over {len(stage_runs(ctx.out))} run directories")
    t0 = time.perf_counter()
    path, comp = write_demo_report(ctx.out, ctx.notes, title=ctx.cfg.title,
                                   figures=ctx.cfg.figures)
    o = StageOutcome("report", "completed", [path], seconds=time.perf_counter() - t0)
    outcomes.append(o)
    recorded["report"] = {"status": "completed", "seconds": round(o.seconds, 1),
                          "runs": [str(path)]}
    ctx.message(f"{tag} done in {o.seconds:.0f} s -> {page}")
    return path, comp


def _describe(name: str, cfg: DemoConfig) -> str:
    t, s, d, c = cfg.toy, cfg.spectra, cfg.dynamics, cfg.scale
    if name == "toy":
        return (f"{' vs '.join(t.regimes)} gpt_mini on {t.task}, {t.train_size} problems, "
                f"{t.train.steps} steps each")
    if name == "spectra":
        return (f"tiny {s.arch} ({s.layers} layers, GQA {s.heads}/{s.kv_heads}) over "
                f"{s.dataset} x 3 CoT levels x correct/irrelevant, {s.limit} samples per "
                "file; mean and summed loss")
    if name == "dynamics":
        return (f"fine-tune the toy {d.base_regime} model under {', '.join(d.regimes)}, "
                f"{d.steps} steps each with every probe, then surprisal")
    return (f"majority vote / pass@n over {','.join(map(str, c.samples))} samples of each "
            "toy model")
