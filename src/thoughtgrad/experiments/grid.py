# SPDX-License-Identifier: MIT
"""The Layer_Gradient paper's grid (seeds 001, 002) as one resumable job of spectra runs.

A grid is a run directory holding one ``thoughtgrad spectra`` run directory per *cell*
(one dataset under one control) in ``cells/<name>/``, and its own ``manifest.json`` listing
the cells and their status::

    RUN_DIR/
      manifest.json            command "grid", GridConfig, model kind and chat-template
                               decision, cells [{name, dataset, control, path, status, ...}]
      cells/aqua/              a spectra run: 6 files (none/simplified/detailed x
      cells/gsm8k/               correct/irrelevant), mean loss over the response
      cells/gsm8k-answer/      --loss-span answer on the same files
      cells/gsm8k-random/      --init random (same architecture, seeded, untrained)
      cells/gsm8k-sum/         the summed loss, DERIVED from cells/gsm8k (no measurement)
      cells/wiki_popularity/   popular 100 / 500 / 1000 and long tail x correct/irrelevant

Every measured cell is :func:`~thoughtgrad.experiments.spectra_run.run_spectra` with a
:class:`~thoughtgrad.experiments.spectra_config.SpectraConfig`, exactly what
``thoughtgrad spectra`` runs, so a cell can be resumed or inspected with the spectra
tooling. Killed at any point, the same command resumes: finished cells are skipped
(without loading the model), a partial cell resumes sample by sample, the derived sum cell
is rewritten from its source. Every file of a dataset is read with the same limit (the
smallest file's length when ``limit`` is unset), so every condition of a dataset holds
the same sample ids (0-based record indices).

Under ``torchrun`` / ``accelerate launch`` the whole grid is one job: every rank walks the
cells in the same order and measures its share of every cell (``run_spectra`` with the
rank's :class:`~thoughtgrad.distributed.World`: samples owned by a stable hash, shards
tagged with the rank); rank 0 alone writes the grid's and the cells' manifests and the
derived sum cell. A barrier opens every cell (its manifest exists and the previous cell is
recorded before any rank reads it); within a measured cell ``run_spectra`` has its own.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thoughtgrad import distributed
from thoughtgrad.distributed import World
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.spectra_config import ATTN_IMPLEMENTATIONS, SpectraConfig
from thoughtgrad.experiments.spectra_tables import SAMPLES_TABLE, TABLE
from thoughtgrad.experiments.sum_control import sum_samples, sum_spectra
from thoughtgrad.models.placement import parse_device_map
from thoughtgrad.runs.store import RunDir, check_identity

log = logging.getLogger(__name__)

REASONING: tuple[str, ...] = ("aqua", "creak", "ecqa", "gsm8k", "sensemaking", "strategyqa")
"""The reasoning datasets of ``cot_500/`` (math: aqua, gsm8k; commonsense: the rest)."""
WIKI = "wiki_popularity"
"""The knowledge-learning dataset: ``wiki_popularity/`` and its shuffled twin."""
DATASETS: tuple[str, ...] = (*REASONING, WIKI)
CONTROLS: tuple[str, ...] = ("sum", "answer", "random")
"""``sum``: summed loss (derived, not measured); ``answer``: only the final answer carries
loss; ``random``: the same architecture re-initialised (seeded), untrained."""

COT_SUFFIXES: tuple[str, ...] = ("_no_cot", "_with_cot", "_with_cot_gpt4o")
"""none / simplified / detailed CoT, as the shared data names its files."""
REASONING_FOLDERS: tuple[str, ...] = ("cot_500", "cot_500_wrong_answer_shuffle")
WIKI_STEMS: tuple[str, ...] = ("popular_wikipedia_100", "popular_wikipedia_500",
                               "popular_wikipedia_1000", "long_tail_wikipedia")
WIKI_FOLDERS: tuple[str, ...] = ("wiki_popularity", "wiki_popularity_wrong_answer_shuffle")
CELLS_DIR = "cells"
MODEL_KINDS = ("instruct", "base")

PACKAGED_KINDS: dict[str, str] = {"pkg:smollm2-135m-instruct": "instruct",
                                  "pkg:gemma-3-270m": "base"}
"""The kind of each packaged model name (issue 11): SmolLM2-135M-Instruct is instruction
tuned, google/gemma-3-270m is the base model."""

INSTRUCT_NAME = re.compile(r"instruct|(?:^|[-_./])(?:it|chat|sft|dpo|rlhf)(?:$|[-_./])",
                           re.IGNORECASE)
"""A model name (id, directory, GGUF file or its recorded ``_name_or_path``) that says it is
instruction tuned: ``...-Instruct``, ``gemma-3-270m-it``, ``...-chat``. A base model's
tokenizer often carries a chat template too (Gemma's does), so the template alone does not
make a model instruct."""


@dataclass(frozen=True)
class GridConfig:
    """Everything that defines a ``thoughtgrad grid`` run (saved in its manifest)."""

    model: str
    """a local model directory, a hub id, a .gguf file or a pkg: name"""
    data_root: str = "../shared/data/layer_gradient"
    """folder laid out like the shared layer_gradient data (cot_500/,
    cot_500_wrong_answer_shuffle/, wiki_popularity/, ...)"""
    datasets: tuple[str, ...] = DATASETS
    """datasets of the grid: aqua, creak, ecqa, gsm8k, sensemaking, strategyqa,
    wiki_popularity"""
    controls: tuple[str, ...] = CONTROLS
    """controls on --control-datasets: sum (derived from the mean-loss cell), answer
    (answer-only loss span), random (untrained model of the same architecture)"""
    control_datasets: tuple[str, ...] = ("gsm8k",)
    """datasets that get the controls"""
    limit: int | None = None
    """only the first N records of every file (default: as many as the dataset's
    shortest file; raise it later to extend the same grid)"""
    chat_template: bool | None = None
    """encode with the tokenizer's chat template (instruct) or as plain text (base);
    default: decided from the model and recorded in the manifest"""
    model_kind: str | None = None
    """instruct or base (default: from the model's name; used by the report's
    instruct-vs-base claims)"""
    system_prompt: str | None = None
    """system turn with the chat template"""
    max_length: int | None = None
    """token bound per sample (default: the model's maximum)"""
    roles: tuple[str, ...] | None = None
    """roles among q,k,v,o,gate,up,down (default: all)"""
    method: str = "fast"
    """fast (exact, batched) or reference (slow per-sample SVD)"""
    seed: int = 0
    """seed of the random-init control"""
    batch_tokens: int = 4096
    """memory bound: padded tokens per batch"""
    dtype: str = "fp32"
    """model weights: fp32, bf16, fp16, fp64"""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1 ..."""
    device_map: str | None = None
    """spread a model too large for one device over the GPUs (then the CPU) with
    accelerate: auto, balanced, sequential, or a JSON object / .json file of module path ->
    device; replaces --device (one process, not under a launcher)"""
    attn_implementation: str = "eager"
    """eager or sdpa"""
    recompute_layers: bool = False
    """recompute each layer block's forward in the backward: far less memory, one more
    forward of time, the same numbers"""
    trust_remote_code: bool = False
    """allow a hub model's own code to run"""

    def __post_init__(self) -> None:
        unknown = [d for d in self.datasets if d not in DATASETS]
        if unknown or not self.datasets:
            raise UserError(f"datasets: unknown {', '.join(unknown) or '(none given)'}; "
                            f"choose from {', '.join(DATASETS)}")
        bad = [c for c in self.controls if c not in CONTROLS]
        if bad:
            raise UserError(f"controls: unknown {', '.join(bad)}; choose from "
                            f"{', '.join(CONTROLS)}")
        bad = [d for d in self.control_datasets if d not in DATASETS]
        if bad:
            raise UserError(f"control datasets: unknown {', '.join(bad)}")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"limit must be >= 1, got {self.limit}")
        if self.model_kind is not None and self.model_kind not in MODEL_KINDS:
            raise UserError(f"model kind must be instruct or base, got {self.model_kind!r}")
        if self.attn_implementation not in ATTN_IMPLEMENTATIONS:
            raise UserError(f"attn_implementation must be one of "
                            f"{', '.join(ATTN_IMPLEMENTATIONS)}")
        parse_device_map(self.device_map)


SampleProgress = Callable[["Cell"], tuple[Callable[[int], None] | None,
                                          Callable[[int], None] | None]]
"""``cell -> (on_total, progress)``: sample-count callbacks for one measured cell."""


@dataclass(frozen=True)
class Cell:
    """One spectra run of the grid: a dataset's files under one control."""

    name: str
    dataset: str
    control: str  # "none" for the plain measurement
    files: tuple[str, ...]
    limit: int

    @property
    def derived(self) -> bool:
        """The sum control is computed from the dataset's plain cell, not measured."""
        return self.control == "sum"


@dataclass(frozen=True)
class Decision:
    """How the grid encodes text for this model, and why (recorded in the manifest)."""

    kind: str
    chat_template: bool
    reason: str


# -- the cells ---------------------------------------------------------------------------
def dataset_files(root: Path, dataset: str) -> tuple[Path, ...]:
    """The data files of ``dataset`` under ``root``: correct then irrelevant responses, each
    none / simplified / detailed (wiki: popular 100 / 500 / 1000, long tail). A missing
    root or file is a one-line error."""
    if not root.is_dir():
        raise UserError(f"data root {root}: no such folder (give --data-root, laid out like "
                        "../shared/data/layer_gradient)")
    if dataset == WIKI:
        paths = [root / folder / f"{stem}.json" for folder in WIKI_FOLDERS
                 for stem in WIKI_STEMS]
    else:
        paths = [root / folder / f"{dataset}_train{suffix}.json"
                 for folder in REASONING_FOLDERS for suffix in COT_SUFFIXES]
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p}: no such data file (dataset {dataset} needs "
                            f"{len(paths)} files under {root})")
    return tuple(paths)


def _records_in(path: Path) -> int:
    from thoughtgrad.tasks.records import read_rows

    return len(read_rows(path))


def plan(cfg: GridConfig, root: Path) -> list[Cell]:
    """The grid's cells in the order they run: each dataset's plain cell, then its controls
    (sum first: it costs nothing)."""
    cells: list[Cell] = []
    for dataset in cfg.datasets:
        files = dataset_files(root, dataset)
        shortest = min(_records_in(p) for p in files)
        limit = shortest if cfg.limit is None else min(cfg.limit, shortest)
        cells.append(Cell(dataset, dataset, "none", tuple(map(str, files)), limit))
        if dataset in cfg.control_datasets:
            cells += [Cell(f"{dataset}-{c}", dataset, c, tuple(map(str, files)), limit)
                      for c in CONTROLS if c in cfg.controls]
    return cells


def spectra_config(cfg: GridConfig, cell: Cell, decision: Decision) -> SpectraConfig:
    """The ``thoughtgrad spectra`` settings of one cell (for the sum cell: the settings it
    stands for)."""
    return SpectraConfig(
        model=cfg.model, data=cell.files, roles=cfg.roles, batch_tokens=cfg.batch_tokens,
        max_length=cfg.max_length, dtype=cfg.dtype, device=cfg.device,
        device_map=cfg.device_map, method=cfg.method,
        limit=cell.limit, chat_template=decision.chat_template,
        system_prompt=cfg.system_prompt, trust_remote_code=cfg.trust_remote_code,
        loss_reduction="sum" if cell.control == "sum" else "mean",
        loss_span="answer" if cell.control == "answer" else "response",
        init="random" if cell.control == "random" else "pretrained", seed=cfg.seed,
        attn_implementation=cfg.attn_implementation, recompute_layers=cfg.recompute_layers)


# -- instruct or base --------------------------------------------------------------------
def _model_names(model: str) -> list[str]:
    """Names that may say what a model is: as given, and a local directory's recorded
    ``_name_or_path``."""
    names = [model]
    cfg = Path(model).expanduser() / "config.json"
    if cfg.is_file():
        try:
            recorded = json.loads(cfg.read_text()).get("_name_or_path")
        except (json.JSONDecodeError, UnicodeDecodeError):
            recorded = None
        if isinstance(recorded, str) and recorded:
            names.append(recorded)
    return names


def model_kind(model: str) -> tuple[str, str]:
    """``("instruct" | "base", reason)`` from the packaged names and the model's names."""
    if model in PACKAGED_KINDS:
        return PACKAGED_KINDS[model], f"packaged model {model} is {PACKAGED_KINDS[model]}"
    for name in _model_names(model):
        text = Path(name).name or name
        if INSTRUCT_NAME.search(text):
            return "instruct", f"the name {text!r} says instruction-tuned"
    return "base", "no instruct marker in the model's name"


def decide(cfg: GridConfig, tokenizer_loader: Callable[[], Any] | None = None) -> Decision:
    """The model's kind and whether to use the chat template: an instruct model whose
    tokenizer has a chat template gets it, anything else plain text (the paper's two
    encodings); ``cfg.chat_template`` / ``cfg.model_kind`` override."""
    if cfg.model_kind is not None:
        kind, why = cfg.model_kind, "given (--model-kind)"
    else:
        kind, why = model_kind(cfg.model)
    if cfg.chat_template is not None:
        return Decision(kind, cfg.chat_template,
                        f"{why}; chat template {'on' if cfg.chat_template else 'off'} as given")
    if kind != "instruct":
        return Decision(kind, False, f"{why}; plain text (prompt + newline + response)")
    if tokenizer_loader is None:
        from thoughtgrad.models.hf import load_tokenizer

        def tokenizer_loader() -> Any:
            return load_tokenizer(cfg.model, trust_remote_code=cfg.trust_remote_code)
    has = bool(getattr(tokenizer_loader(), "chat_template", None))
    if not has:
        return Decision(kind, False, f"{why}, but its tokenizer has no chat template; "
                                     "plain text")
    return Decision(kind, True, f"{why} and its tokenizer has a chat template; chat template")


# -- running ------------------------------------------------------------------------------
@dataclass
class CellResult:
    """What one cell did in this invocation."""

    name: str
    status: str  # completed / skipped / derived / failed
    samples: int = 0
    already_done: int = 0
    computed: int = 0
    failed: int = 0
    seconds: float = 0.0
    error: str | None = None


def _grid_identity(cfg: GridConfig, root: Path, decision: Decision) -> dict[str, Any]:
    """Settings the whole grid shares; datasets, controls and limit may change on resume
    (each cell checks its own settings)."""
    return {"model": cfg.model, "data_root": str(root.resolve()), "roles": cfg.roles,
            "max_length": cfg.max_length, "dtype": cfg.dtype, "method": cfg.method,
            "seed": cfg.seed, "chat_template": decision.chat_template,
            "system_prompt": cfg.system_prompt}


def _cell_entry(cell: Cell, status: str, **extra: Any) -> dict[str, Any]:
    return {"name": cell.name, "dataset": cell.dataset, "control": cell.control,
            "path": f"{CELLS_DIR}/{cell.name}", "limit": cell.limit,
            "derived_from": f"{CELLS_DIR}/{cell.dataset}" if cell.derived else None,
            "files": list(cell.files), "status": status, **extra}


def _finished(run: RunDir, limit: int) -> bool:
    """A cell completed with this limit (a larger limit extends it; a run killed after the
    last sample but before its status was written is resumed, which measures nothing)."""
    m = run.manifest() if (run.path / "manifest.json").exists() else {}
    return m.get("status") == "completed" and (m.get("config") or {}).get("limit") == limit


class Grid:
    """A grid run directory: its cells, their spectra runs and the manifest listing them.

    With a ``world`` of several ranks (a launched job), construct it on every rank: rank 0
    checks and writes the manifest, the others wait for it and read the encoding decision
    from it.
    """

    def __init__(self, cfg: GridConfig, out: str | Path, *,
                 tokenizer_loader: Callable[[], Any] | None = None,
                 world: World = distributed.SINGLE) -> None:
        if world.distributed and cfg.device_map is not None:
            raise UserError("--device-map under a launcher: every rank would spread its copy "
                            "of the model over every GPU; use one process with --device-map, "
                            "or one rank per GPU without it")
        self.cfg = cfg
        self.world = world
        self.root = Path(cfg.data_root).expanduser()
        self.cells = plan(cfg, self.root)  # checks the data before anything is written
        self.path = Path(out)
        self.entries: dict[str, dict[str, Any]] = {}
        if world.main:
            previous = self._previous_decision()
            self.decision = previous or decide(cfg, tokenizer_loader)
            self._check_cells()
            self.run = RunDir.create(out, command="grid", config=cfg, seed=cfg.seed,
                                     identity=_grid_identity(cfg, self.root, self.decision))
            self.run.update_manifest(model=cfg.model, model_kind=self.decision.kind,
                                     chat_template=self.decision.chat_template,
                                     chat_template_reason=self.decision.reason)
            self.entries = {e["name"]: e for e in self.run.manifest().get("cells", [])
                            if "name" in e}
            for cell in self.cells:
                old = self.entries.get(cell.name, {})
                status = old.get("status", "pending")
                self.entries[cell.name] = {**old, **_cell_entry(cell, status)}
            self._write_cells()
        distributed.barrier(world)  # the grid manifest exists before the other ranks read it
        if not world.main:
            self.run = RunDir(out)
            m = self.run.manifest()
            self.decision = Decision(m["model_kind"], bool(m["chat_template"]),
                                     m["chat_template_reason"])

    def _previous_decision(self) -> Decision | None:
        """A resumed grid keeps the encoding it started with unless told otherwise (no
        tokenizer is loaded again)."""
        p = self.path / "manifest.json"
        if not p.is_file() or self.cfg.chat_template is not None or self.cfg.model_kind:
            return None
        m = RunDir(self.path).manifest()
        if m.get("command") != "grid" or "chat_template" not in m:
            return None
        return Decision(m.get("model_kind", "base"), bool(m["chat_template"]),
                        m.get("chat_template_reason", "recorded"))

    def cell_dir(self, cell: Cell) -> Path:
        return self.path / CELLS_DIR / cell.name

    def _check_cells(self) -> None:
        """Refuse (one line) before any work when a cell already holds other settings or its
        data changed."""
        from thoughtgrad.experiments.spectra_run import check_resume

        for cell in self.cells:
            d = self.cell_dir(cell)
            if not (d / "manifest.json").is_file():
                continue
            run = RunDir(d)
            if cell.derived:
                continue  # rewritten from its source cell every time
            scfg = spectra_config(self.cfg, cell, self.decision)
            check_identity(d, run.manifest(), scfg.identity())
            check_resume(scfg, run)

    def _write_cells(self) -> None:
        order = [c.name for c in self.cells]
        rest = [e for n, e in self.entries.items() if n not in order]  # from earlier calls
        self.run.update_manifest(cells=[self.entries[n] for n in order] + rest)

    def _mark(self, cell: Cell, status: str, **extra: Any) -> None:
        """Record a cell's status in the grid manifest (rank 0's job; other ranks skip)."""
        if not self.world.main:
            return
        self.entries[cell.name].update(status=status, **extra)
        self._write_cells()

    # -- one cell -----------------------------------------------------------------------
    def run_cell(self, cell: Cell, samples: SampleProgress | None = None) -> CellResult:
        """Measure (or derive) one cell; ``samples(cell)`` gives ``(on_total, progress)``
        callbacks handed to :func:`~thoughtgrad.experiments.spectra_run.run_spectra` (on
        rank 0 only, with the whole job's counts). In a launched job every rank calls this
        for every cell, in the same order."""
        world = self.world
        distributed.barrier(world)  # the previous cell is recorded before any rank reads
        if cell.derived:
            if not world.main:  # rank 0 writes the derived cell alone
                return CellResult(cell.name, "derived")
            return self._derive(cell)
        from thoughtgrad.experiments.spectra_run import run_spectra

        d = self.cell_dir(cell)
        scfg = spectra_config(self.cfg, cell, self.decision)
        if _finished(RunDir(d), cell.limit):  # the same answer on every rank: nothing wrote
            counts = RunDir(d).manifest().get("counts", {})
            self._mark(cell, "completed", counts=counts)
            return CellResult(cell.name, "skipped", samples=counts.get("samples", 0),
                              already_done=counts.get("done", 0))
        distributed.barrier(world)  # every rank has read the cell's status
        if world.main:
            RunDir.create(d, command="spectra", config=scfg, seed=scfg.seed,
                          identity=scfg.identity(),
                          grid={"run": "../..", "cell": cell.name, "dataset": cell.dataset,
                                "control": cell.control},
                          model_kind=self.decision.kind)
            self._mark(cell, "running")
        distributed.barrier(world)  # the cell's manifest exists before the others open it
        run = RunDir(d, writer=world.writer)  # each rank's shards carry its tag
        start = time.perf_counter()
        on_total, advance = samples(cell) if samples is not None and world.main \
            else (None, None)
        try:
            summary = run_spectra(scfg, run, progress=advance, on_total=on_total, world=world)
        except KeyboardInterrupt:
            if world.main:
                run.set_status("interrupted")
                self._mark(cell, "interrupted")
            raise
        except UserError as exc:
            if world.main:
                run.set_status("failed", error=str(exc))
                self._mark(cell, "failed", error=str(exc))
            return CellResult(cell.name, "failed", seconds=time.perf_counter() - start,
                              error=str(exc))
        seconds = time.perf_counter() - start
        if not world.main:
            return CellResult(cell.name, "completed", samples=summary.samples,
                              already_done=summary.already_done, computed=summary.computed,
                              failed=summary.failed, seconds=seconds)
        run.set_status("completed", seconds=round(seconds, 3))
        self._mark(cell, "completed", counts=run.manifest().get("counts", {}), error=None)
        return CellResult(cell.name, "completed", samples=summary.samples,
                          already_done=summary.already_done, computed=summary.computed,
                          failed=summary.failed, seconds=seconds)

    def _derive(self, cell: Cell) -> CellResult:
        """Write the sum cell from the dataset's mean-loss cell (whatever it holds so far)."""
        start = time.perf_counter()
        source = self.path / CELLS_DIR / cell.dataset
        src = RunDir(source)
        if not src.has_table(TABLE):
            msg = f"{source}: no mean-loss rows to derive the sum control from"
            self._mark(cell, "failed", error=msg)
            return CellResult(cell.name, "failed", error=msg)
        scfg = spectra_config(self.cfg, cell, self.decision)
        identity = {**scfg.identity(), "derived_from": f"../{cell.dataset}"}
        d = self.cell_dir(cell)
        run = RunDir.create(d, command="spectra", config=scfg, seed=scfg.seed,
                            identity=identity, model_kind=self.decision.kind,
                            grid={"run": "../..", "cell": cell.name, "dataset": cell.dataset,
                                  "control": cell.control},
                            derived_from=f"../{cell.dataset}",
                            derivation="summed loss = n_tokens x mean loss: nuclear, "
                                       "sigma_max, sigma_min, frobenius scaled by n_tokens; "
                                       "ratio, effective_rank, rank, loss (the mean) unchanged")
        rows = sum_spectra(src.read(TABLE))
        run.write(TABLE, rows)
        if src.has_table(SAMPLES_TABLE):
            run.write(SAMPLES_TABLE, sum_samples(src.read(SAMPLES_TABLE)))
        counts = src.manifest().get("counts", {})
        for key in ("model_provenance", "quantization"):
            if key in src.manifest():
                run.update_manifest(**{key: src.manifest()[key]})
        run.update_manifest(counts=counts)
        run.set_status("completed")
        self._mark(cell, "derived", counts=counts)
        return CellResult(cell.name, "derived", samples=counts.get("samples", 0),
                          already_done=counts.get("done", 0),
                          seconds=time.perf_counter() - start)

    # -- the whole grid -----------------------------------------------------------------
    def run_all(self, progress: Callable[[int, int, Cell, CellResult | None], None] | None
                = None, samples: SampleProgress | None = None) -> list[CellResult]:
        """Run every cell in order; ``progress(i, n, cell, None)`` before and
        ``progress(i, n, cell, result)`` after each, ``samples`` per measured cell (see
        :meth:`run_cell`). A failing cell is recorded and the
        others still run; Ctrl-C / SIGTERM marks the grid interrupted and re-raises."""
        results = []
        total = len(self.cells)
        try:
            for i, cell in enumerate(self.cells, start=1):
                if progress is not None:
                    progress(i, total, cell, None)
                res = self.run_cell(cell, samples)
                results.append(res)
                if progress is not None:
                    progress(i, total, cell, res)
        except KeyboardInterrupt:
            if self.world.main:
                self.run.set_status("interrupted")
            raise
        distributed.barrier(self.world)  # the ranks finish together
        failed = [r for r in results if r.status == "failed"]
        if not self.world.main:
            return results
        if failed:
            self.run.set_status("failed", error=f"{len(failed)} cell(s) failed: "
                                + ", ".join(r.name for r in failed))
        else:
            self.run.set_status("completed")
        return results

