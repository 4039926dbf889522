# SPDX-License-Identifier: MIT
"""``thoughtgrad demo``: every study on embedded defaults, ending in one report.html.

    thoughtgrad demo [--out runs/demo] [--quick] [--skip STUDY ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import pandas as pd

from thoughtgrad.cli.common import (
    HelpFormatter,
    bar_factory,
    positive_int,
    print_table,
)
from thoughtgrad.cli.options import add_config_options, add_set_option, field_docs, from_args
from thoughtgrad.errors import UserError

DEFAULT_OUT = "runs/demo"
QUICK_OUT = "runs/demo-quick"

DESCRIPTION = """\
The first command to run: every thoughtgrad study on a CPU, each into its own run
directory under OUT, then ONE offline OUT/report.html with a section per study.

  1 toy       direct vs CoT gpt_mini (d=128, h=4, L=4) on K-digit addition, 3000 problems,
              2000 steps each; accuracy per K = 2..8 and the error taxonomy   -> OUT/toy
  2 spectra   SmolLM2-135M-Instruct (Q4_1 dequantised, chat template): per-sample,
              per-layer gradient spectra over the shared gsm8k files (none / simplified /
              detailed CoT; correct / irrelevant responses), 8 samples per file, mean
              loss, with the summed-loss control derived from it and the random-init
              control measured: a grid -> OUT/spectra. --quick (or SmolLM2 not
              installed) measures a tiny random-init llama instead (OUT/models)
  3 dynamics  fine-tune the toy CoT model on held-out problems under cot, half (half
              of the steps) and answer supervision with every probe (gradient norm and
              spikes, cosine, lambda_max, distance from init), then per-token surprisal
              -> OUT/dynamics-<regime>
  4 scale     greedy, majority vote and pass@n over 1, 4, 16 samples of both toy models
              -> OUT/scale
  5 report    OUT/report.html (+ OUT/figures), and a short summary on stdout

Re-running the same command skips finished stages and resumes unfinished ones. Without
the shared data (OUT/../shared/data of a source checkout, or --data-dir) the spectra
stage is skipped with a note. OUT/manifest.json records every stage's status.
"""

STAGE_NAMES = ("toy", "spectra", "dynamics", "scale", "report")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run every study on a CPU and write one report.html "
                       "(start here)", description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--out", default=None,
                   help=f"demo directory [default: {DEFAULT_OUT}, {QUICK_OUT} with --quick]")
    p.add_argument("--quick", action="store_true",
                   help="shrink every stage for a smoke run of a minute or two (toy 200 steps "
                        "on 500 problems, spectra of a tiny random llama on 3 samples per file, "
                        "dynamics 30 steps)")
    add_demo_options(p)
    p.add_argument("--threads", type=positive_int, default=None,
                   help="CPU threads for torch (default: torch's choice); 1 is fastest for "
                        "these small models when other jobs share the cores")
    p.set_defaults(func=run)


def add_demo_options(p: argparse.ArgumentParser) -> None:
    """The demo's settings, generated from :class:`DemoConfig` (field docstring = help);
    the shown defaults name both the full and the ``--quick`` value."""
    from thoughtgrad.experiments.demo_config import DemoConfig, quick_config

    full, quick = DemoConfig(), quick_config()

    def both(value_of) -> str:
        def shown(v):
            return ",".join(map(str, v)) if isinstance(v, tuple) else str(v)
        return f"{shown(value_of(full))}; {shown(value_of(quick))} with --quick"

    p.add_argument("--skip", nargs="+", default=argparse.SUPPRESS, choices=STAGE_NAMES,
                   metavar="STUDY", help=f"{field_docs(DemoConfig)['skip']}: "
                                         f"{', '.join(STAGE_NAMES)}")
    add_config_options(p, full.spectra, prefix="spectra.", only=("data_dir", "limit"),
                       types_={"limit": positive_int}, metavars={"data_dir": "DIR"},
                       defaults={"data_dir": "<repo>/../shared/data",
                                 "limit": both(lambda c: c.spectra.limit)})
    add_config_options(p, full.toy.train, prefix="toy.train.", only=("steps",),
                       flags={"steps": "--toy-steps"}, types_={"steps": positive_int},
                       defaults={"steps": both(lambda c: c.toy.train.steps)})
    add_config_options(p, full.dynamics, prefix="dynamics.", only=("steps",),
                       flags={"steps": "--dynamics-steps"}, types_={"steps": positive_int},
                       defaults={"steps": both(lambda c: c.dynamics.steps)})
    add_config_options(p, full.scale, prefix="scale.", only=("samples",),
                       defaults={"samples": both(lambda c: c.scale.samples)})
    add_config_options(p, full, only=("device",))
    add_set_option(p, example="dynamics.limit=100")


def build_config(args: argparse.Namespace):
    """The DemoConfig of the options: the full or the ``--quick`` settings, ``--toy-steps``
    keeping the toy warm-up's share of the run (:meth:`TrainConfig.with_steps`), the other
    options and every ``--set`` applied."""
    from thoughtgrad.experiments.demo_config import DemoConfig, quick_config

    cfg = quick_config() if args.quick else DemoConfig()
    given = dict(vars(args))
    steps = given.pop("toy.train.steps", None)
    if steps is not None:
        cfg = dataclasses.replace(cfg, toy=dataclasses.replace(
            cfg.toy, train=cfg.toy.train.with_steps(steps)))
    return from_args(cfg, argparse.Namespace(**given))


def print_summary(comp) -> None:
    """Toy accuracy per K, the head of the MAD table, the AUROC table, dynamics per regime."""
    t = comp.tables
    if "accuracy" in t:
        acc = t["accuracy"].copy()
        for col in ("direct", "cot", "gap"):
            if col in acc:
                acc[col] = 100 * acc[col]
        acc = acc.drop(columns=[c for c in ("task", "train_size") if c in acc])
        print_table(acc, title="\ntoy lab: accuracy per K (%)", floatfmt=".1f")
    if "spectra_mad" in t:
        mad = t["spectra_mad"]
        mad = mad[mad["metric"] == ("nuclear" if "nuclear" in set(mad["metric"])
                                    else mad["metric"].iloc[0])]
        keys = [k for k in comp.keys if k in mad and mad[k].nunique() > 1]
        cols = ["mad_all", "mad_early", "mad_middle", "mad_late"]
        head = mad.groupby(keys, sort=True)[cols].mean().reset_index() if keys else mad[cols]
        print_table(head, floatfmt=".4g", title=f"\nlayer spectra: MAD of "
                    f"{mad['metric'].iloc[0]} between adjacent layers (mean over roles)")
    if "separation" in t:
        sep = t["separation"]
        sep = sep[sep["role"] == "all"] if (sep["role"] == "all").any() else sep
        keys = [k for k in comp.keys if k in sep and sep[k].nunique() > 1]
        cols = [*keys, "n_pos", "n_neg", "auroc", "auroc_lo", "auroc_hi", "cohens_d"]
        print_table(sep[[c for c in cols if c in sep]], floatfmt=".3g",
                    title="\nirrelevant vs correct responses: AUROC (95% CI) of the mean "
                          "nuclear norm over layers and roles")
    if "dynamics" in t:
        print_table(t["dynamics"], floatfmt=".4g", title="\ntraining dynamics per regime")


def run(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.demo import run_demo

    cfg = build_config(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    out = args.out or (QUICK_OUT if args.quick else DEFAULT_OUT)
    t0 = time.perf_counter()
    result = run_demo(cfg, out, message=lambda line: print(line, file=sys.stderr, flush=True),
                      progress_factory=bar_factory())
    seconds = time.perf_counter() - t0
    if result.comparison is not None:
        print_summary(result.comparison)
    rows = [{"stage": s.name, "status": s.status + (" (earlier run)" if s.resumed_from_done
                                                     else ""),
             "seconds": round(s.seconds, 1), "note": s.note} for s in result.stages]
    print_table(pd.DataFrame(rows), title="\nstages", floatfmt=".1f")
    print(f"\ndemo wall time {seconds:.0f} s")
    if args.quick:
        print("--quick is a smoke run: the models are undertrained, so these numbers are not "
              "the studies' results; run `thoughtgrad demo` for those")
    if result.report is not None:
        print(f"report: {result.report}")
    if result.failed:
        names = ", ".join(f"{s.name} ({s.note})" for s in result.failed)
        raise UserError(f"stage(s) failed: {names}; re-run the same command to resume")
    return 0
