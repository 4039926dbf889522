# SPDX-License-Identifier: MIT
"""The flagship demo: every study on embedded defaults, then one offline ``report.html``.

Stages, each writing its own run directory under the demo directory ``<out>``:

==========  =======================================================================
``toy``     the toy CoT lab (seed 003): direct vs CoT gpt_mini on addition -> ``toy/``
``spectra`` layer spectra (seeds 001/002) of SmolLM2-135M-Instruct (Q4_1 dequantised,
            chat template) over the shared gsm8k files (none / simplified / detailed
            CoT, correct and irrelevant responses), a ``thoughtgrad grid`` of one
            dataset -> ``spectra/`` (cells ``gsm8k``, ``gsm8k-sum``: the summed-loss
            length control derived from it, ``gsm8k-random``: the random-init control);
            ``--quick`` (or SmolLM2 not installed) measures a tiny random-init llama
            with a tokenizer trained on the data's own texts instead (``models/``)
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

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtgrad.errors import UserError
from thoughtgrad.experiments.demo_config import (
    REGIMES,
    STAGES,
    DemoConfig,
)
from thoughtgrad.experiments.demo_stages import (
    STAGE_FUNCS,
    ProgressFactory,
    StageContext,
    StageOutcome,
)
from thoughtgrad.runs.store import RunDir

log = logging.getLogger(__name__)


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
    # spectra/ is a grid directory (its cells are read); spectra-sum/ is an older demo's
    return [out / n for n in names if (out / n / "manifest.json").is_file()]


def write_demo_report(out: Path, notes: list[str], *, title: str = "thoughtgrad demo",
                      figures: bool = True,
                      section_notes: dict[str, list[str]] | None = None) -> tuple[Path, Any]:
    """One offline page over every stage run (figures in ``<out>/figures``); the demo's
    own notes (skipped stages) are listed with the comparison's, ``section_notes`` open
    their report section (``spectra``: what the stage measured)."""
    from thoughtgrad.report import figures as figs
    from thoughtgrad.report.compare import compare_runs
    from thoughtgrad.report.html import build_html

    runs = stage_runs(out)
    if not runs:
        raise UserError(f"{out}: no stage produced a run directory; nothing to report")
    comp = compare_runs(runs)
    comp.notes[:0] = notes
    for key, lines in (section_notes or {}).items():
        comp.section_notes.setdefault(key, [])[:0] = lines
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
        elif o.note:  # what a completed stage measured (kept in the manifest for resumes)
            ctx.section_notes.setdefault(o.name, []).append(o.note)

    with demo.recording():
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
                                    note=str(prev.get("note") or ""),
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
                demo.update_manifest(stages=recorded)
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
                                   figures=ctx.cfg.figures, section_notes=ctx.section_notes)
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
        model = (f"tiny random-init {s.arch} ({s.layers} layers, GQA {s.heads}/{s.kv_heads})"
                 if s.tiny else s.model)
        controls = f"; controls {', '.join(s.controls)}" if s.controls else ""
        return (f"{model} over {s.dataset} x 3 CoT levels x correct/irrelevant, {s.limit} "
                f"samples per file; mean loss{controls}")
    if name == "dynamics":
        return (f"fine-tune the toy {d.base_regime} model under {', '.join(d.regimes)}, "
                f"{d.steps} steps each with every probe, then surprisal")
    return (f"majority vote / pass@n over {','.join(map(str, c.samples))} samples of each "
            "toy model")
