# SPDX-License-Identifier: MIT
"""``thoughtgrad spectra``: per-sample, per-layer gradient spectra of a causal LM over data files.

    thoughtgrad spectra --model DIR_OR_HUB_ID --data FILE [--data FILE ...] --out RUN_DIR

Writes ``RUN_DIR/spectra.parquet/`` (one row per sample x layer x matrix, appended in
shards), ``spectra_samples.parquet/`` (one row per sample), ``spectra_failed.parquet/`` and
``manifest.json``. Re-running the same command resumes: finished samples are skipped,
failed ones are tried again. A run that measures no sample at all is an error (exit 2).
"""

from __future__ import annotations

import argparse
import sys
import time

from thoughtgrad.cli.common import HelpFormatter, ProgressBar, add_out_option, positive_int
from thoughtgrad.cli.options import add_config_options, add_set_option, from_args

DESCRIPTION = """\
Measure, for every sample and every Q/K/V/O and MLP weight matrix of every layer, the
singular values of that sample's loss gradient (the Layer_Gradient paper's measurement,
computed exactly and batched). Each row carries the sample's labels (source file, CoT
level, response kind, condition) and the settings it was computed with.

Condition labels are inferred from the shared data's file names unless --condition is
given: _no_cot -> none, _with_cot -> simplified, _with_cot_gpt4o -> detailed; a folder
named *wrong_answer_shuffle* -> irrelevant responses, else correct.

Confound controls: --loss-reduction sum (no 1/length factor), --loss-span answer (only the
final answer carries loss), --init random (the same architecture, untrained). Each control
is its own run: give it a new --out (a run directory refuses other settings) and pass
all the run directories to `thoughtgrad compare` / `thoughtgrad report`.

With --loss-span answer, the answer is found by its shape from the prompt (an option
letter, Sentence A/B, yes/no, one of the listed options, a number), first in the marked
answer ("The final answer is", \\boxed{}, ####, "Answer:"), then in the last line, then
anywhere; and when a dataset's _no_cot file is given with its CoT files (same folder),
as that file's bare answer found in the long response. A response that never states
its answer is recorded as failed.
"""

SUM_NOTE = ("note: the sum control needs no measurement of its own: for one sample the "
            "summed-loss gradient is n_tokens x the mean-loss one, so `thoughtgrad grid` "
            "derives it from the mean run (experiments/sum_control.py)")


def register(sub: argparse._SubParsersAction) -> None:
    from thoughtgrad.experiments.spectra_config import (
        ATTN_IMPLEMENTATIONS,
        INITS,
        LOSS_REDUCTIONS,
        METHODS,
        SpectraConfig,
    )
    from thoughtgrad.tasks.encode import LOSS_SPANS

    p = sub.add_parser("spectra", help="layer-wise gradient spectra over data files",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    base = SpectraConfig(model="", data=("",))
    g = p.add_argument_group("inputs and output")
    add_config_options(g, base, only=("model", "data"), required=("model", "data"),
                       repeat=("data",), metavars={"data": "FILE"})
    add_out_option(g, required=True, what="run directory; re-running with the same settings "
                   "resumes it")
    add_config_options(g, base, only=("limit", "condition", "prompt_field", "response_field"),
                       types_={"limit": positive_int}, repeat=("condition",),
                       metavars={"limit": "N"})
    m = p.add_argument_group("measurement")
    add_config_options(
        m, base, only=("roles", "method", "include_fused", "loss_reduction", "loss_span",
                       "answer_pattern", "chat_template", "system_prompt", "max_length",
                       "init", "seed"),
        types_={"max_length": positive_int}, metavars={"answer_pattern": "REGEX"},
        choices={"method": METHODS, "loss_reduction": LOSS_REDUCTIONS,
                 "loss_span": LOSS_SPANS, "init": INITS})
    r = p.add_argument_group("resources")
    add_config_options(r, base, only=("batch_tokens", "dtype", "device", "device_map",
                                      "attn_implementation", "recompute_layers",
                                      "trust_remote_code"),
                       types_={"batch_tokens": positive_int}, metavars={"device_map": "MAP"},
                       choices={"attn_implementation": ATTN_IMPLEMENTATIONS})
    add_set_option(p)
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    from thoughtgrad.experiments.spectra_config import SpectraConfig

    return from_args(SpectraConfig(model=args.model, data=tuple(args.data)), args)


def run(args: argparse.Namespace) -> int:
    from thoughtgrad import distributed

    with distributed.launched() as world:  # torchrun / accelerate launch: one rank each
        return _run(args, world)


def _run(args: argparse.Namespace, world) -> int:
    import contextlib

    from thoughtgrad import distributed
    from thoughtgrad.experiments.spectra_run import check_launch, check_resume, run_spectra
    from thoughtgrad.runs.store import RunDir

    cfg = build_config(args)
    check_launch(cfg, world)
    if world.main:
        if cfg.loss_reduction == "sum":
            print(SUM_NOTE, file=sys.stderr, flush=True)
        check_resume(cfg, RunDir(args.out))  # data bytes, before the manifest is touched
        run_dir = RunDir.create(args.out, command="spectra", config=cfg, seed=cfg.seed,
                                identity=cfg.identity())
    distributed.barrier(world)  # the manifest exists before any other rank starts
    run_dir = RunDir(args.out, writer=world.writer)
    bar = ProgressBar("spectra", unit="sample", rate=True) if world.main else None
    start = time.perf_counter()
    try:
        with run_dir.recording() if world.main else contextlib.nullcontext():
            summary = run_spectra(cfg, run_dir, progress=bar and bar.advance,
                                  on_total=bar and bar.reset, world=world)
    finally:
        if bar is not None:
            bar.close()
    if not world.main:
        return 0
    seconds = time.perf_counter() - start
    run_dir.set_status("completed", seconds=round(seconds, 3))
    print(f"{summary.samples} samples: {summary.already_done} already done, "
          f"{summary.computed} measured ({summary.rows} rows), {summary.failed} failed, "
          f"{summary.truncated} truncated; {seconds:.1f} s -> {run_dir.table_path('spectra')}")
    return 0
