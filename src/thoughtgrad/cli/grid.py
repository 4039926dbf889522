# SPDX-License-Identifier: MIT
"""``thoughtgrad grid``: the Layer_Gradient paper's grid as one resumable job.

    thoughtgrad grid --model M --out RUN_DIR [--datasets gsm8k,wiki_popularity] [--limit N]

The options are generated from :class:`~thoughtgrad.experiments.grid.GridConfig`, whose
fields carry their help text.
"""

from __future__ import annotations

import argparse
import sys
import time

from thoughtgrad.cli.common import HelpFormatter, add_out_option, positive_int
from thoughtgrad.cli.options import add_config_options, add_set_option, from_args

DESCRIPTION = """\
Measure the paper's grid on one model, one `thoughtgrad spectra` run directory per cell
under RUN_DIR/cells/ (a cell is one dataset under one control), with RUN_DIR/manifest.json
listing the cells and their status. Default grid: aqua, creak, ecqa, gsm8k, sensemaking,
strategyqa (none / simplified / detailed CoT x correct / irrelevant responses) and
wiki_popularity (popular 100 / 500 / 1000 and long tail x correct / irrelevant); on gsm8k
the controls: answer (only the final answer carries loss), random (the same architecture,
untrained) and sum (the summed loss: for one sample its gradient is exactly n_tokens times
the mean-loss one, so it is derived from the gsm8k cell, not measured).

Every file of a dataset is read with the same limit, so all its conditions hold the same
sample ids. An instruct model (by its name) whose tokenizer has a chat template is encoded
with it, any other as plain text; the decision and its reason are in the manifest.

Killed at any point, the same command resumes: finished cells are skipped, a partial cell
continues sample by sample. `thoughtgrad report RUN_DIR` reads every cell.

Under `torchrun --nproc_per_node N -m thoughtgrad grid ...` (or `accelerate launch -m
thoughtgrad grid ...`) every process measures its share of every cell; process 0 writes
the manifests and the derived cell and shows the progress.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from thoughtgrad.experiments.grid import GridConfig

    p = sub.add_parser("grid", help="the paper's grid (datasets x CoT levels x correct/"
                       "irrelevant, with controls) as one resumable job",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    add_out_option(p, what="grid directory; re-running the same command resumes it",
                   required=True)
    base = GridConfig(model="")
    add_config_options(p, base, required=("model",),
                       types_={"limit": positive_int, "max_length": positive_int,
                               "batch_tokens": positive_int},
                       metavars={"device_map": "MAP"})
    add_set_option(p)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    from thoughtgrad.experiments.grid import GridConfig

    return from_args(GridConfig(model=args.model), args)


def _progress(i: int, n: int, cell, result) -> None:
    head = f"grid [{i}/{n}] {cell.name}"
    if result is None:
        what = f"derived from cell {cell.dataset}" if cell.derived else \
            f"{len(cell.files)} files x {cell.limit} samples"
        print(f"{head}: {what}", file=sys.stderr, flush=True)
        return
    if result.status == "skipped":
        tail = f"already complete ({result.already_done}/{result.samples} samples), skipped"
    elif result.status == "failed":
        tail = f"FAILED: {result.error}"
    elif result.status == "derived":
        tail = f"derived ({result.already_done}/{result.samples} samples)"
    else:
        tail = (f"{result.samples} samples: {result.already_done} already done, "
                f"{result.computed} measured, {result.failed} failed")
    print(f"{head}: {tail}; {result.seconds:.1f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from thoughtgrad import distributed

    with distributed.launched() as world:  # torchrun / accelerate launch: one rank each
        return _run(args, world)


def _run(args: argparse.Namespace, world) -> int:
    from thoughtgrad.experiments.grid import Grid

    cfg = build_config(args)
    grid = Grid(cfg, args.out, world=world)
    if not world.main:  # measures its share of every cell; rank 0 reports
        grid.run_all()
        return 0
    print(f"grid: {len(grid.cells)} cells under {grid.path}; model kind {grid.decision.kind}"
          f" ({grid.decision.reason})", file=sys.stderr, flush=True)
    start = time.perf_counter()
    results = grid.run_all(progress=_progress)
    failed = [r for r in results if r.status == "failed"]
    print(f"{len(results)} cells: {sum(r.status == 'skipped' for r in results)} already "
          f"complete, {sum(r.status == 'completed' for r in results)} measured, "
          f"{sum(r.status == 'derived' for r in results)} derived, {len(failed)} failed; "
          f"{time.perf_counter() - start:.1f} s -> {grid.path / 'manifest.json'}")
    return 2 if failed else 0
