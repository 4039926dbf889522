# SPDX-License-Identifier: MIT
"""``thoughtgrad compare``: condition contrasts of one or more runs as tables and figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from thoughtgrad.cli.common import HelpFormatter, add_out_option, positive_int, print_table
from thoughtgrad.cli.options import add_config_options, add_set_option, from_args
from thoughtgrad.errors import UserError
from thoughtgrad.report.compare import CompareConfig, Comparison, compare_runs

DESCRIPTION = """\
Read the tables of the given run directories (never a model) and write, into REPORT_DIR,
CSV + Markdown + LaTeX (booktabs) tables and PNG + PDF figures:

  spectra_curves   mean and 95% bootstrap interval across samples, per condition
                   (cot_level, response_kind, condition label, dataset), role and layer
  spectra_mad      mean absolute difference between adjacent layers: all / early /
                   middle / late thirds of the layers
  spectra_reldiff  mean relative difference between CoT levels (and irrelevant vs
                   correct), the layers where it is largest, next to the controls
                   (loss_reduction, loss_span, init, model) present in the runs
  separation       AUROC (bootstrap interval) and Cohen's d of a per-sample statistic
                   (mean over layers) for irrelevant vs correct, per CoT level and role
  accuracy, errors, dynamics, surprisal, scale   when the runs have those tables

Missing tables or columns skip their section with a note; nothing is fatal except a
path that is not a directory.
"""


def add_compare_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``compare`` and ``report``: the run directories, then one option
    per :class:`CompareConfig` field of the analysis, and ``--set``."""
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories to read")
    a = p.add_argument_group("analysis")
    add_config_options(a, CompareConfig(), only=ANALYSIS_OPTIONS,
                       types_={"n_boot": positive_int})
    add_set_option(a, example="level=0.9")


ANALYSIS_OPTIONS = ("metrics", "per_loss", "separation_metric", "n_boot", "seed")
"""The CompareConfig fields with their own option (the others by ``--set``)."""


def config_from_args(args: argparse.Namespace) -> CompareConfig:
    return from_args(CompareConfig(), args)


def print_notes(comp: Comparison) -> None:
    for note in comp.notes:
        print(f"note: {note}", file=sys.stderr)


def print_key_tables(comp: Comparison) -> None:
    """The MAD of the first metric, the separation table and the toy accuracy table."""
    t = comp.tables
    if "spectra_mad" in t:
        mad = t["spectra_mad"]
        first = mad["metric"].iloc[0] if "nuclear" not in set(mad["metric"]) else "nuclear"
        if comp.config.per_loss and "nuclear/loss" in set(mad["metric"]):
            first = "nuclear/loss"
        varying = [k for k in comp.keys if mad[k].nunique() > 1]
        cols = [*varying, "role", "mad_all", "mad_early", "mad_middle", "mad_late"]
        print_table(mad.loc[mad["metric"] == first, cols], floatfmt=".4g",
                    title=f"\nMAD of {first} between adjacent layers")
    if "separation" in t:
        sep = t["separation"]
        varying = [k for k in comp.keys if k in sep and sep[k].nunique() > 1]
        cols = [*varying, "role", "positive", "n_pos", "n_neg", "auroc", "auroc_lo",
                "auroc_hi", "cohens_d"]
        print_table(sep[cols], floatfmt=".3g", title=f"\nSeparation of irrelevant from correct: "
                                     f"{sep['statistic'].iloc[0]} (AUROC, 95% CI, Cohen's d)")
    if "accuracy" in t:
        print_table(t["accuracy"], title="\nToy lab accuracy per K")


def run(args: argparse.Namespace) -> int:
    from thoughtgrad.report.figures import render_all
    from thoughtgrad.report.tables import save_all

    comp = compare_runs(args.runs, config_from_args(args))  # first: bad runs create nothing
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{out}: cannot create the report folder ({exc.strerror or exc})"
                        ) from None
    saved = save_all(comp.tables, out)
    fig = {} if args.no_figures else render_all(comp, out / "figures")
    print_key_tables(comp)
    print_notes(comp)
    n_fig = sum(len(v) for v in fig.values())
    print(f"\nwrote {len(saved)} tables (CSV, Markdown, LaTeX) and {n_fig} figures (PNG, PDF) "
          f"to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare conditions across runs: tables and figures",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    add_compare_options(p)
    add_out_option(p, required=True, metavar="REPORT_DIR",
                   what="folder for the CSV/Markdown/LaTeX tables and figures/")
    p.add_argument("--no-figures", action="store_true", help="write the tables only")
    p.set_defaults(func=run)
