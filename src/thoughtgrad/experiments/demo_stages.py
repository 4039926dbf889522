# SPDX-License-Identifier: MIT
"""The demo's stages: each runs one study into its run directory under the demo directory.

A stage is a function ``(StageContext) -> StageOutcome`` listed in :data:`STAGE_FUNCS`;
:func:`thoughtgrad.experiments.demo.run_demo` calls them in order, records each outcome in
the demo manifest and goes on when one fails. A stage whose inputs are absent returns a
``skipped`` outcome with a note saying why.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from thoughtgrad.errors import UserError
from thoughtgrad.experiments.toy import checkpoint_name
from thoughtgrad.runs.store import RunDir

if TYPE_CHECKING:
    import pandas as pd

    from thoughtgrad.experiments.demo_config import DemoConfig, SpectraStage
    from thoughtgrad.experiments.grid import GridConfig

log = logging.getLogger(__name__)


Progress = Callable[[int, int, float], None]
ProgressFactory = Callable[[str, int], Progress]


# -- the spectra data -------------------------------------------------------------------------
def default_data_dir() -> Path:
    """``<repo>/../shared/data`` for a source checkout (``<repo>/src/thoughtgrad``)."""
    import thoughtgrad

    return Path(thoughtgrad.__file__).resolve().parents[2].parent / "shared" / "data"


def spectra_root(cfg: SpectraStage) -> Path:
    """The folder laid out like the shared ``layer_gradient`` data."""
    return (Path(cfg.data_dir) if cfg.data_dir else default_data_dir()) / "layer_gradient"


def spectra_files(cfg: SpectraStage) -> tuple[list[Path], list[Path]]:
    """The six data files (correct then irrelevant, none/simplified/detailed; the grid's
    layout) and the ones that are missing."""
    from thoughtgrad.experiments.grid import COT_SUFFIXES, REASONING_FOLDERS

    root = spectra_root(cfg)
    files = [root / folder / f"{cfg.dataset}_train{suffix}.json"
             for folder in REASONING_FOLDERS for suffix in COT_SUFFIXES]
    return files, [f for f in files if not f.is_file()]


def spectra_model(cfg: SpectraStage) -> tuple[str, str]:
    """``(model, note)``: the model the stage measures - ``cfg.model``, or
    :data:`~thoughtgrad.experiments.demo_config.TINY_MODEL` when that is a packaged model
    whose package is not installed (the note says which ``pip install`` brings it)."""
    from thoughtgrad.experiments.demo_config import TINY_MODEL
    from thoughtgrad.models import packaged

    if cfg.tiny or not packaged.is_packaged(cfg.model):
        return cfg.model, ""
    pm = packaged.lookup(cfg.model)
    if packaged.installed(pm):
        return cfg.model, ""
    return TINY_MODEL, (f"{pm.display_name} is not installed, so the spectra stage measured "
                        f"the tiny random-init llama instead; `{pm.pip}` brings it")


# -- outcomes and context ---------------------------------------------------------------------
@dataclass
class StageOutcome:
    """What one stage did: ``completed``, ``skipped`` (with a note saying why) or
    ``failed``; ``runs`` are the run directories it wrote; ``seconds`` wall time."""

    name: str
    status: str
    runs: list[Path] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0
    resumed_from_done: bool = False



@dataclass
class StageContext:
    """What every stage reads: the demo's settings and directory, the line printer, the
    progress-bar factory, the notes the stages add to the report, and the notes opening a
    report section (by section: ``spectra``)."""

    cfg: DemoConfig
    out: Path
    message: Callable[[str], None]
    progress_factory: ProgressFactory | None
    notes: list[str] = field(default_factory=list)
    section_notes: dict[str, list[str]] = field(default_factory=dict)

    def toy_checkpoint(self, regime: str) -> Path:
        return self.out / "toy" / "checkpoints" / checkpoint_name(self.cfg.toy, regime)

    def bar(self, name: str, total: int) -> Progress | None:
        return self.progress_factory(name, total) if self.progress_factory else None


def _run_dir(path: Path, command: str, config: Any, seed: int | None = None) -> RunDir:
    return RunDir.create(path, command=f"demo: {command}", config=config, seed=seed)


def _finished(path: Path) -> bool:
    return (path / "manifest.json").is_file() and RunDir(path).manifest().get(
        "status") == "completed"


def _checkpoint_ready(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


# -- stages -----------------------------------------------------------------------------------
def stage_toy(ctx: StageContext) -> StageOutcome:
    """Train and evaluate direct and CoT gpt_mini models (``run_toy``, resumable)."""
    from thoughtgrad.experiments.toy import run_toy

    toy = dataclasses.replace(ctx.cfg.toy, device=ctx.cfg.device)
    run = _run_dir(ctx.out / "toy", "toy", toy, toy.seed)
    t0 = time.perf_counter()
    run_toy(toy, run, progress_factory=ctx.progress_factory)
    run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    return StageOutcome("toy", "completed", [run.path])


def build_spectra_model(cfg: SpectraStage, files: list[Path], directory: Path,
                        seed: int) -> Path:
    """The tiny random-init model and its tokenizer (trained on every text of ``files``),
    saved once into ``directory`` and reused on resumption."""
    if _checkpoint_ready(directory) and (directory / "tokenizer.json").is_file():
        return directory
    from thoughtgrad.models.tiny import build_tokenizer, save_tiny
    from thoughtgrad.tasks.records import infer_labels, load_records

    texts = []
    for f in files:
        for rec in load_records(f, infer_labels(f)):
            texts.append(f"{rec.prompt}\n{rec.output}")
    tok = build_tokenizer(texts, vocab_size=cfg.vocab_size)
    return save_tiny(directory, cfg.arch, tok, seed=seed, hidden_size=cfg.hidden_size,
                     intermediate_size=cfg.intermediate_size, num_hidden_layers=cfg.layers,
                     num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads,
                     max_position_embeddings=cfg.max_positions)


@dataclass
class _Counter:
    """Adapts ``run_spectra``'s (total, samples finished) callbacks to a progress bar."""

    ctx: StageContext
    name: str
    done: int = 0
    total: int = 0
    bar: Progress | None = None

    def start(self, total: int) -> None:
        self.total, self.bar = total, self.ctx.bar(self.name, total)

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar(self.done, self.total, float("nan"))


def spectra_grid_config(cfg: DemoConfig, model: str, *, tiny: bool = False) -> GridConfig:
    """The grid the spectra stage runs on ``model``: ``cfg.spectra.dataset`` alone (six
    files) with its controls (a ``tiny`` model gets no random-init control: it is untrained
    already)."""
    from thoughtgrad.experiments.grid import GridConfig

    sc = cfg.spectra
    controls = tuple(c for c in sc.controls if not (tiny and c == "random"))
    return GridConfig(model=model, data_root=str(spectra_root(sc)), datasets=(sc.dataset,),
                      controls=controls, control_datasets=(sc.dataset,), limit=sc.limit,
                      batch_tokens=sc.batch_tokens, attn_implementation=sc.attn_implementation,
                      device=cfg.device, seed=cfg.toy.seed)


def spectra_note(grid: GridConfig, model: str, decision: Any) -> str:
    """What the spectra stage measured, in words for the report."""
    from thoughtgrad.experiments.demo_config import TINY_MODEL
    from thoughtgrad.models import packaged

    if model == TINY_MODEL:
        what = "a tiny random-init llama with a tokenizer trained on the data's texts"
    elif packaged.is_packaged(model):
        what = f"{packaged.lookup(model).display_name}, a trained model"
    else:
        what = model
    enc = "its chat template" if decision.chat_template else "plain text"
    controls = [{"sum": "the summed loss (derived from the mean-loss run: n_tokens x each "
                        "singular value, no second measurement)",
                 "random": "the same architecture at random init (measured)",
                 "answer": "the answer-only loss span (measured)"}[c] for c in grid.controls]
    return (f"spectra: {what}, encoded with {enc}, on {grid.limit} samples per file of "
            f"{grid.datasets[0]} (6 files: none / simplified / detailed CoT x correct / "
            f"irrelevant; the same sample ids in each), the paper's mean loss"
            + (f"; controls: {'; '.join(controls)}" if controls else "")
            + f". {grid.limit} samples per file are a demo's sample, not a study: "
            "`thoughtgrad grid` measures more.")


def stage_spectra(ctx: StageContext) -> StageOutcome:
    """A one-dataset grid (``thoughtgrad grid``) into ``<out>/spectra``: the paper's mean
    loss, the derived summed-loss control and the random-init control."""
    from thoughtgrad.experiments.demo_config import TINY_MODEL
    from thoughtgrad.experiments.grid import Grid

    sc = ctx.cfg.spectra
    files, missing = spectra_files(sc)
    if missing:
        return StageOutcome("spectra", "skipped", note=(
            f"shared data not found ({missing[0]}"
            f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''}); give "
            "--data-dir DIR holding layer_gradient/ to measure the layer spectra"))
    model, fallback = spectra_model(sc)
    if fallback:
        ctx.message(f"  note: {fallback}")
    measured = model
    if model == TINY_MODEL:
        measured = str(build_spectra_model(sc, files, ctx.out / "models" / f"tiny-{sc.arch}",
                                           ctx.cfg.toy.seed))
    gcfg = spectra_grid_config(ctx.cfg, measured, tiny=model == TINY_MODEL)
    grid = Grid(gcfg, ctx.out / "spectra")
    counters: dict[str, _Counter] = {}

    def samples(cell: Any) -> tuple[Callable[[int], None], Callable[[int], None]]:
        counters[cell.name] = c = _Counter(ctx, f"measure {cell.name}")
        return c.start, c.advance

    results = grid.run_all(samples=samples)
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise UserError("spectra: " + "; ".join(f"{r.name}: {r.error}" for r in failed))
    for r in results:
        if r.failed:
            ctx.notes.append(f"spectra {r.name}: {r.failed} sample(s) could not be measured "
                             "(see spectra_failed)")
    note = spectra_note(gcfg, model, grid.decision)
    return StageOutcome("spectra", "completed", [grid.path],
                        note=f"{fallback}. {note}" if fallback else note)


def stage_dynamics(ctx: StageContext) -> StageOutcome:
    """Fine-tune the toy base checkpoint under every regime, then surprisal per model."""
    if importlib.util.find_spec("thoughtgrad.experiments.dynamics") is None:
        return StageOutcome("dynamics", "skipped",
                            note="the dynamics study is not installed in this version")
    from thoughtgrad.experiments.dynamics import (
        TOY_TRAIN,
        DynamicsConfig,
        ProbeConfig,
        run_dynamics,
    )

    dc = ctx.cfg.dynamics
    base = ctx.toy_checkpoint(dc.base_regime)
    if not _checkpoint_ready(base):
        return StageOutcome("dynamics", "skipped",
                            note=f"needs the toy stage's {dc.base_regime} checkpoint ({base})")
    train = dataclasses.replace(
        TOY_TRAIN, steps=dc.steps, batch_size=dc.batch_size, seed=ctx.cfg.toy.seed,
        checkpoint_every=max(1, min(TOY_TRAIN.checkpoint_every or dc.steps, dc.steps)),
        warmup_steps=min(TOY_TRAIN.warmup_steps, max(1, dc.steps // 10)))
    probes = ProbeConfig(curvature_every=dc.curvature_every,
                         curvature_max_iter=dc.curvature_max_iter,
                         probe_batch_size=dc.probe_batch_size)
    runs = []
    for regime in dc.regimes:
        path = ctx.out / f"dynamics-{regime}"
        runs.append(path)
        model_dir = path / f"model-{regime}"
        if _finished(path) and _checkpoint_ready(model_dir) and RunDir(path).has_table(
                "surprisal"):
            continue
        cfg = DynamicsConfig(model=str(base), data=f"toy:{ctx.cfg.toy.task}", regime=regime,
                             train=train, probes=probes, device=ctx.cfg.device,
                             limit=dc.limit, data_seed=ctx.cfg.toy.seed)
        run = _run_dir(path, f"train --regime {regime}", cfg, train.seed)
        t0 = time.perf_counter()
        if not _checkpoint_ready(model_dir):
            result, _ = run_dynamics(cfg, run, progress=ctx.bar(f"fine-tune {regime}",
                                                                dc.steps))
            if result.stopped_reason:
                run.set_status("failed", error=result.stopped_reason)
                raise UserError(f"dynamics {regime}: training stopped: "
                                f"{result.stopped_reason}")
        surprisal_run(run, model_dir, base, ctx.cfg, regime)
        run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    return StageOutcome("dynamics", "completed", runs)


def surprisal_run(run: RunDir, model_dir: Path, base: Path, cfg: DemoConfig,
                  regime: str) -> pd.DataFrame:
    """Per-token surprisal (bits) and Lemma 1/2 quantities of a fine-tuned toy model on its
    regime's responses to held-out problems it was not tuned on; written to ``surprisal``
    and ``surprisal_samples`` of ``run`` (replacing earlier versions)."""
    from thoughtgrad.config import resolve_device
    from thoughtgrad.experiments.dynamics import measure_surprisal
    from thoughtgrad.experiments.dynamics_data import toy_examples
    from thoughtgrad.models.gpt_mini import GPTMini
    from thoughtgrad.tasks.toy import TOKENIZER

    dc = cfg.dynamics
    device = resolve_device(cfg.device)
    examples = toy_examples(base, cfg.toy.task, regime, seed=cfg.toy.seed)
    chosen = examples[dc.limit:dc.limit + dc.surprisal_samples]
    if not chosen:
        log.warning("surprisal %s: every held-out problem was fine-tuned on; measuring on "
                    "the first %d of them", regime, dc.surprisal_samples)
        chosen = examples[:dc.surprisal_samples]
    model = GPTMini.load(model_dir, device=device).eval()
    tokens, samples = measure_surprisal(model, chosen, pad_id=TOKENIZER.pad_id,
                                        condition=regime, device=device, batch_size=64)
    run.write("surprisal", tokens)
    run.write("surprisal_samples", samples)
    return tokens


def stage_scale(ctx: StageContext) -> StageOutcome:
    """Greedy, majority vote and pass@n per K of every toy checkpoint (resumable by model)."""
    if importlib.util.find_spec("thoughtgrad.evaluate.scaling") is None:
        return StageOutcome("scale", "skipped",
                            note="the test-time compute study is not installed in this version")
    from thoughtgrad.config import resolve_device
    from thoughtgrad.evaluate.scaling import SampleConfig, label_scale_rows, scale_study
    from thoughtgrad.experiments.toy import REGIME_STYLE, config_from_checkpoint, split_for
    from thoughtgrad.models.gpt_mini import GPTMini
    from thoughtgrad.tasks.toy import get_task

    sc = ctx.cfg.scale
    ckpts = [(r, ctx.toy_checkpoint(r)) for r in ctx.cfg.toy.regimes]
    absent = [str(p) for _, p in ckpts if not _checkpoint_ready(p)]
    if absent:
        return StageOutcome("scale", "skipped",
                            note=f"needs the toy stage's checkpoints ({absent[0]})")
    sampling = SampleConfig(samples=tuple(sc.samples), temperature=sc.temperature, seed=sc.seed)
    run = _run_dir(ctx.out / "scale", "toy scale", {
        "checkpoints": [str(p) for _, p in ckpts], "sampling": dataclasses.asdict(sampling),
        "per_k": sc.per_k}, sc.seed)
    done = set(run.read("scale", columns=["model"])["model"]) if run.has_table("scale") else set()
    device = resolve_device(ctx.cfg.device)
    t0 = time.perf_counter()
    for regime, ckpt in ckpts:
        toy, _ = config_from_checkpoint(ckpt)
        model = GPTMini.load(ckpt, device=device).eval()
        label = f"{regime}-L{model.config.n_layer}"
        if label in done:
            continue
        evals = {k: list(ps)[:sc.per_k] if sc.per_k else list(ps)
                 for k, ps in split_for(toy).eval.items()}
        df = scale_study(model, get_task(toy.task), evals, REGIME_STYLE[regime], sampling,
                         device=device)
        labels = {"task": toy.task, "model": label, "regime": regime,
                  "n_layer": model.config.n_layer, "params": model.num_params()}
        df = label_scale_rows(df, labels, temperature=sampling.temperature,
                              train_ks=toy.train_ks)
        df["checkpoint"] = str(ckpt)
        run.append("scale", df)
    run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    return StageOutcome("scale", "completed", [run.path])


STAGE_FUNCS: dict[str, Callable[[StageContext], StageOutcome]] = {
    "toy": stage_toy, "spectra": stage_spectra, "dynamics": stage_dynamics,
    "scale": stage_scale}
"""The stages that run before the report, by name."""
