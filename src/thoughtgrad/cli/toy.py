# SPDX-License-Identifier: MIT
"""``thoughtgrad toy``: the toy chain-of-thought lab (seed 003).

    thoughtgrad toy                      train direct + CoT, evaluate, print the per-K table
    thoughtgrad toy train --regime cot   train one regime into a run directory
    thoughtgrad toy eval --checkpoint D  evaluate a checkpoint on its held-out problems
    thoughtgrad toy simulate --layers L --k K   the serial-compute budget table
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import pandas as pd

from thoughtgrad.cli.common import (
    HelpFormatter,
    add_out_option,
    bar_factory,
    int_list,
    positive_int,
    print_table,
)
from thoughtgrad.cli.options import (
    add_config_options,
    add_set_option,
    field_docs,
    from_args,
    overrides_of,
)
from thoughtgrad.cli.toy_scale import register_scale
from thoughtgrad.errors import UserError

DEFAULT_OUT = "runs/toy"
DEFAULT_EVAL_OUT = "runs/toy-eval"

DESCRIPTION = """\
The toy chain-of-thought lab (seed 003).

  thoughtgrad toy                      train direct + CoT, evaluate, print the per-K table
  thoughtgrad toy train --regime cot   train one regime into a run directory
  thoughtgrad toy eval --checkpoint D  evaluate a checkpoint on its held-out problems
  thoughtgrad toy simulate --layers L --k K   the serial-compute budget table
  thoughtgrad toy scale / loops / knobs       test-time compute (seed 004)
"""


STUDY_FIELDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", ("task", "train_size", "train_ks", "eval_ks")),
    ("train.", ("steps", "batch_size", "lr")),
    ("model.", ("n_layer", "d_model", "n_head")),
    ("", ("eval_per_k", "seed", "device")),
)
"""The study options (shared by ``toy`` and ``toy train``): ToyConfig fields by the
dotted prefix of their nested config, in the order ``--help`` shows them."""
STUDY_FLAGS = {"n_layer": "--layers", "n_head": "--heads"}
"""Flags that are not the field's name (the toy lab's words for the model's sizes)."""


def _study_args(p: argparse.ArgumentParser, *, grid: bool, inherit: bool = False) -> None:
    """Add the study options, generated from :class:`ToyConfig` (field docstring = help).
    ``grid``: task and training size take comma-separated lists (a sweep). ``inherit``: a
    subcommand's copy, whose ``--set`` is applied after the study's (options not given
    keep what was given before the subcommand: ``toy --steps 30 train`` trains 30
    steps)."""
    from thoughtgrad.experiments.toy import ToyConfig

    base = ToyConfig()
    g = p.add_argument_group("study")
    sizes = {name: positive_int for name in
             ("train_size", "steps", "batch_size", "n_layer", "d_model", "n_head", "eval_per_k")}
    if grid:
        sizes |= {"task": lambda text: [t.strip() for t in text.split(",") if t.strip()],
                  "train_size": int_list}
    for prefix, names in STUDY_FIELDS:
        config = getattr(base, prefix[:-1]) if prefix else base
        add_config_options(g, config, only=names, prefix=prefix, flags=STUDY_FLAGS,
                           types_=sizes, metavars={"train_ks": "KS", "eval_ks": "KS"})
    add_set_option(g, sub=inherit)


def given_study_options(args: argparse.Namespace) -> list[str]:
    """The flags of the study options given on the command line."""
    return [STUDY_FLAGS.get(name, "--" + name.replace("_", "-"))
            for prefix, names in STUDY_FIELDS for name in names if prefix + name in vars(args)]


def _one(args: argparse.Namespace, name: str, command: str):
    """A single value of an option that the whole study accepts as a list."""
    value = getattr(args, name, None)
    if isinstance(value, list):
        if len(value) != 1:
            raise UserError(f"{command} takes one --{name.replace('_', '-')}, got "
                            f"{','.join(map(str, value))}")
        return value[0]
    return value


def build_config(args: argparse.Namespace, *, command: str = "thoughtgrad toy"):
    """The ToyConfig the options describe; a sweep's first task and size stand in for
    the grid (check every grid value with :func:`check_grid`)."""
    from thoughtgrad.experiments.toy import ToyConfig

    values = dict(vars(args))
    for name in ("task", "train_size"):  # a sweep (a list) or one value
        if name in values:
            values[name] = (values[name] or [None])[0] if command == "thoughtgrad toy" \
                else _one(args, name, command)
    if getattr(args, "regime", None):
        values["regimes"] = (args.regime,)
    return from_args(ToyConfig(), argparse.Namespace(**values))


def check_grid(cfg, tasks: list[str], sizes: list[int]) -> None:
    """Every cell of a sweep is valid (before any training starts)."""
    from thoughtgrad.tasks.toy import get_task

    for t in tasks:
        get_task(t)
    for n in sizes:
        if n < 1:
            raise UserError(f"--train-size values must be >= 1, got {n}")


def toy_identity(cfg) -> dict:
    """The settings a resumed toy run must share with the run it continues: all but the
    grid axes (task, training size, regime: new cells may be added) and what changes no
    number (device, checkpoint interval, threads and worker processes)."""
    from thoughtgrad.config import identity_of

    return identity_of(cfg, drop=("task", "train_size", "regimes", "device",
                                  "train.checkpoint_every",
                                  "threads", "parallel"))


def print_accuracy(acc: pd.DataFrame, timings: pd.DataFrame | None = None) -> None:
    from thoughtgrad.evaluate.tables import accuracy_table, error_counts

    table = accuracy_table(acc)
    for (task, size), part in table.groupby(["task", "train_size"], sort=False):
        view = part.drop(columns=["task", "train_size"]).copy()
        rates = [c for c in view.columns if c not in ("k", "n")]
        view[rates] = (100 * view[rates].astype(float)).round(1)
        seen = acc[(acc["task"] == task) & (acc["train_size"] == size)]
        ood = (set(seen.loc[seen["split"] != "in_distribution", "k"]) if "split" in seen
               else set())
        view.insert(1, "range", ["OOD" if k in ood else "train" for k in view["k"]])
        print_table(view, title=f"\n{task}, {size} training problems: accuracy per K (%)",
                    floatfmt=".1f")
    errs = error_counts(acc)
    if not errs.empty:
        wide = errs.pivot_table(index=["task", "train_size", "regime", "error_kind"], columns="k",
                                values="count", aggfunc="sum", fill_value=0).reset_index()
        counts = [c for c in wide.columns if c not in ("task", "train_size", "regime",
                                                       "error_kind")]
        wide[counts] = wide[counts].astype(int)
        wide.columns = [str(c) for c in wide.columns]
        print_table(wide, title="\nerror taxonomy (counts per K)")
    if timings is not None and not timings.empty:
        print_table(timings[["task", "train_size", "regime", "train_seconds", "tokens_per_second",
                             "eval_seconds", "final_loss"]], title="\nwall times", floatfmt=".1f")


def cmd_study(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.toy import read_timings, run_toy
    from thoughtgrad.runs.store import RunDir

    cfg = build_config(args)
    tasks = getattr(args, "task", None) or [cfg.task]
    sizes = getattr(args, "train_size", None) or [cfg.train_size]
    check_grid(cfg, tasks, sizes)
    run = RunDir.create(getattr(args, "out", DEFAULT_OUT), command="toy", config=cfg, seed=cfg.seed,
                        identity=toy_identity(cfg), grid={"tasks": tasks, "train_sizes": sizes})
    t0 = time.perf_counter()
    with run.recording():
        acc = run_toy(cfg, run, tasks=tasks, train_sizes=sizes, progress_factory=bar_factory())
    run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    print_accuracy(acc, read_timings(run))
    print(f"\nrun directory: {run.path}  (tables: accuracy, accuracy_by_k, errors, timings)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.toy import checkpoint_name, split_for, train_regime
    from thoughtgrad.runs.store import RunDir

    cfg = build_config(args, command="thoughtgrad toy train")
    run = RunDir.create(getattr(args, "out", DEFAULT_OUT), command="toy train", config=cfg,
                        seed=cfg.seed, identity=toy_identity(cfg))
    name = checkpoint_name(cfg, args.regime)
    directory = run.path / "checkpoints" / name
    _, result = train_regime(cfg, split_for(cfg), args.regime, directory,
                             progress=bar_factory()(f"train {name}", cfg.train.steps))
    if result.stopped_reason:
        run.set_status("failed", error=result.stopped_reason)
        raise UserError(f"training stopped: {result.stopped_reason}; last good checkpoint "
                        f"kept in {directory}")
    run.set_status("completed")
    print(f"checkpoint: {directory}\nfinal loss {result.final_loss:.4f}; "
          f"{result.tokens_per_second:,.0f} tokens/s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.toy import (
        ToyConfig,
        config_from_checkpoint,
        evaluate_regime,
        split_for,
    )
    from thoughtgrad.models.gpt_mini import GPTMini
    from thoughtgrad.runs.store import RunDir

    given = [flag for flag in given_study_options(args) if flag != "--device"]
    given += ["--set"] if overrides_of(args) else []
    if given:
        raise UserError(f"toy eval takes the split and model from the checkpoint; drop "
                        f"{', '.join(given)}")
    cfg, regime = config_from_checkpoint(args.checkpoint)
    cfg = dataclasses.replace(cfg, device=getattr(args, "device", ToyConfig().device))
    model = GPTMini.load(args.checkpoint)
    acc = evaluate_regime(cfg, split_for(cfg), regime, model)
    out = args.eval_out or getattr(args, "out", None) or DEFAULT_EVAL_OUT
    run = RunDir.create(out, command="toy eval", config={"checkpoint": str(args.checkpoint)})
    run.write("accuracy", acc)
    run.set_status("completed")
    print_accuracy(acc)
    print(f"\naccuracy table: {run.table_path('accuracy')}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from thoughtgrad.report.simulator import budget_table
    from thoughtgrad.tasks.toy import check_k

    for k in args.k:
        check_k(k)  # the toy lab's K range
    table = budget_table(args.layers, args.k)
    print_table(table, title="serial-compute budget (seed 003): direct = one forward pass; "
                             "CoT = one pass per response token", floatfmt=".1f")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from thoughtgrad.experiments.toy import REGIME_STYLE, ToyConfig

    p = sub.add_parser(
        "toy", formatter_class=HelpFormatter,
        help="the toy CoT lab: train direct and CoT gpt_mini models, accuracy per K",
        description=DESCRIPTION + "\nWithout a subcommand, runs the whole study: trains a direct "
        "and a CoT model with the same loop, evaluates accuracy for K = 2..8 (7 and 8 are "
        "out of distribution) on held-out problems, classifies every failure, and writes "
        "the run directory. Re-running the same command resumes.")
    _study_args(p, grid=True)
    add_out_option(p, default=DEFAULT_OUT, what="run directory", inherit=True)
    p.set_defaults(func=cmd_study)
    tsub = p.add_subparsers(dest="toy_command", metavar="SUBCOMMAND")

    t = tsub.add_parser("train", formatter_class=HelpFormatter,
                        help="train one regime's gpt_mini into RUN/checkpoints/",
                        description="Train one gpt_mini on one regime's texts with the shared "
                        "SFT loop (prompt-masked cross-entropy, AdamW, clip 1.0). Resumable.")
    _study_args(t, grid=False, inherit=True)
    t.add_argument("--regime", choices=sorted(REGIME_STYLE), default="cot",
                   help=f"the one regime to train, of the {field_docs(ToyConfig)['regimes']} "
                        "[default: cot]")
    add_out_option(t, default=DEFAULT_OUT, what="run directory", inherit=True)
    t.set_defaults(func=cmd_train)

    e = tsub.add_parser("eval", formatter_class=HelpFormatter,
                        help="evaluate a toy checkpoint per K",
                        description="Greedy-decode the checkpoint's held-out problems (the "
                        "split is rebuilt from the checkpoint's config), extract answers, "
                        "classify errors, print and save accuracy per K.")
    e.add_argument("--checkpoint", required=True, help="checkpoint directory")
    e.add_argument("--out", dest="eval_out", default=None, metavar="RUN_DIR",
                   help=f"run directory (its accuracy table is replaced) "
                        f"[default: {DEFAULT_EVAL_OUT}]")
    add_config_options(e, ToyConfig(), only=("device",))
    e.set_defaults(func=cmd_eval)

    s = tsub.add_parser("simulate", formatter_class=HelpFormatter,
                        help="serial-compute budget table for L layers and K digits",
                        description="The seed's budget model: direct needs K-1 serial adds in "
                        "one pass of L layers; CoT spends one pass per response token.")
    s.add_argument("--layers", type=int_list, default=[4], help="L values, e.g. 2,4,8")
    s.add_argument("--k", type=int_list, default=[2, 3, 4, 5, 6, 7, 8], help="K values, e.g. 2-8")
    s.set_defaults(func=cmd_simulate)
    register_scale(tsub)
