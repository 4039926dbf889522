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
from pathlib import Path

import pandas as pd

from thoughtgrad.cli.common import HelpFormatter, int_list, positive_int, print_table
from thoughtgrad.cli.toy_scale import register_scale
from thoughtgrad.config import apply_overrides
from thoughtgrad.errors import UserError

DEFAULT_OUT = "runs/toy"


def _study_args(p: argparse.ArgumentParser, *, grid: bool) -> None:
    g = p.add_argument_group("study")
    if grid:
        g.add_argument("--task", type=lambda s: s.split(","), default=None,
                       help="task families, comma-separated: addition (a digit sum), fold "
                            "(left fold of + - * mod 10, truly serial) [default: addition]")
        g.add_argument("--train-size", type=int_list, default=None,
                       help="distinct training problems, comma-separated for a sweep, e.g. "
                            "3000,100000 [default: 3000]")
    else:
        g.add_argument("--task", default=None, help="task family: addition or fold")
        g.add_argument("--train-size", type=positive_int, default=None,
                       help="distinct training problems [default: 3000]")
    g.add_argument("--steps", type=int, default=None, help="optimizer steps [default: 2000]")
    g.add_argument("--batch-size", type=positive_int, default=None, help="[default: 64]")
    g.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate [1e-3]")
    g.add_argument("--layers", type=positive_int, default=None, help="gpt_mini depth L [4]")
    g.add_argument("--d-model", type=positive_int, default=None, help="width d [128]")
    g.add_argument("--heads", type=positive_int, default=None, help="attention heads h [4]")
    g.add_argument("--eval-per-k", type=positive_int, default=None,
                   help="held-out problems per K (at most a fifth of that K's space) [200]")
    g.add_argument("--seed", type=int, default=None, help="seed for data, init and batches [0]")
    g.add_argument("--device", default=None, help="auto, cpu, cuda, cuda:1 ... [auto]")
    g.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set train.warmup_steps=50 "
                        "--set model.n_loops=2 (repeatable)")


def build_config(args: argparse.Namespace):
    from thoughtgrad.experiments.toy import ToyConfig
    from thoughtgrad.models.gpt_mini import GPTMiniConfig
    from thoughtgrad.train.sft import TrainConfig

    cfg = ToyConfig()
    model = dict(n_layer=args.layers, d_model=args.d_model, n_head=args.heads)
    model = {k: v for k, v in model.items() if v is not None}
    train = dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr)
    train = {k: v for k, v in train.items() if v is not None}
    top = {}
    task = getattr(args, "task", None)
    if isinstance(task, list):
        task = task[0]
    if task is not None:
        top["task"] = task
    size = getattr(args, "train_size", None)
    if isinstance(size, list):
        size = size[0]
    if size is not None:
        top["train_size"] = size
    for name in ("eval_per_k", "seed", "device"):
        if getattr(args, name, None) is not None:
            top[name] = getattr(args, name)
    if getattr(args, "regime", None):
        top["regimes"] = (args.regime,)
    cfg = dataclasses.replace(
        cfg, model=GPTMiniConfig(**{**dataclasses.asdict(cfg.model), **model}),
        train=TrainConfig(**{**dataclasses.asdict(cfg.train), **train}), **top)
    return apply_overrides(cfg, args.overrides)


def bar_factory():
    """``make(name, total)`` -> a ``(done, total, loss)`` callback driving a training
    progress bar on stderr; without a terminal, a plain line every tenth of the run."""
    import sys

    from tqdm.auto import tqdm

    def make(name: str, total: int):
        bar = tqdm(total=total, desc=f"train {name}", unit="step", dynamic_ncols=True,
                   file=sys.stderr, disable=not sys.stderr.isatty())

        every = max(1, total // 10)

        def update(done: int, total_: int, loss: float) -> None:
            if bar.disable and (done % every == 0 or done == total_):
                # No terminal (logs, CI): a plain line every tenth of the run instead.
                print(f"train {name}: step {done}/{total_} loss {loss:.4f}", file=sys.stderr,
                      flush=True)
            bar.n = done
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.refresh()
            if done >= total_:
                bar.close()

        return update

    return make


def print_accuracy(acc: pd.DataFrame, timings: pd.DataFrame | None = None) -> None:
    from thoughtgrad.evaluate.accuracy import accuracy_table, error_counts

    table = accuracy_table(acc)
    for (task, size), part in table.groupby(["task", "train_size"], sort=False):
        view = part.drop(columns=["task", "train_size"]).copy()
        for col in ("direct", "cot", "simplified", "half", "gap"):
            if col in view:
                view[col] = (100 * view[col]).round(1)
        view.insert(1, "range", ["train" if k <= 6 else "OOD" for k in view["k"]])
        print_table(view, title=f"\n{task}, {size} training problems: accuracy per K (%)",
                    floatfmt=".1f")
    errs = error_counts(acc)
    if not errs.empty:
        wide = errs.pivot_table(index=["task", "train_size", "regime", "error_kind"], columns="k",
                                values="count", fill_value=0).reset_index()
        wide.columns = [str(c) for c in wide.columns]
        print_table(wide, title="\nerror taxonomy (counts per K)")
    if timings is not None and not timings.empty:
        print_table(timings[["task", "train_size", "regime", "train_seconds", "tokens_per_second",
                             "eval_seconds", "final_loss"]], title="\nwall times", floatfmt=".1f")


def cmd_study(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.toy import run_toy
    from thoughtgrad.report.store import RunDir

    cfg = build_config(args)
    tasks = args.task or [cfg.task]
    sizes = args.train_size or [cfg.train_size]
    run = RunDir.create(args.out, command="toy", config=cfg, seed=cfg.seed,
                        grid={"tasks": tasks, "train_sizes": sizes})
    t0 = time.perf_counter()
    try:
        acc = run_toy(cfg, run, tasks=tasks, train_sizes=sizes, progress_factory=bar_factory())
    except BaseException as exc:
        run.set_status("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                       error=str(exc))
        raise
    run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    print_accuracy(acc, run.read("timings") if run.has_table("timings") else None)
    print(f"\nrun directory: {run.path}  (tables: accuracy, accuracy_by_k, errors, timings)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.toy import checkpoint_name, split_for, train_regime
    from thoughtgrad.report.store import RunDir

    cfg = build_config(args)
    run = RunDir.create(args.out, command=f"toy train --regime {args.regime}", config=cfg,
                        seed=cfg.seed)
    name = checkpoint_name(cfg, args.regime)
    directory = run.path / "checkpoints" / name
    _, result = train_regime(cfg, split_for(cfg), args.regime, directory,
                             progress=bar_factory()(name, cfg.train.steps))
    if result.stopped_reason:
        run.set_status("failed", error=result.stopped_reason)
        raise UserError(f"training stopped: {result.stopped_reason}; last good checkpoint "
                        f"kept in {directory}")
    run.set_status("completed")
    print(f"checkpoint: {directory}\nfinal loss {result.final_loss:.4f}; "
          f"{result.tokens_per_second:,.0f} tokens/s")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.toy import config_from_checkpoint, evaluate_regime, split_for
    from thoughtgrad.models.gpt_mini import GPTMini
    from thoughtgrad.report.store import RunDir

    cfg, regime = config_from_checkpoint(args.checkpoint)
    if args.device:
        cfg = dataclasses.replace(cfg, device=args.device)
    model = GPTMini.load(args.checkpoint)
    acc = evaluate_regime(cfg, split_for(cfg), regime, model)
    out = Path(args.out) if args.out else Path(args.checkpoint)
    run = RunDir.create(out, command="toy eval", config={"checkpoint": str(args.checkpoint)})
    run.write("accuracy", acc)
    run.set_status("completed")
    print_accuracy(acc)
    print(f"\naccuracy table: {run.table_path('accuracy')}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from thoughtgrad.report.simulator import budget_table

    table = budget_table(args.layers, args.k)
    print_table(table, title="serial-compute budget (seed 003): direct = one forward pass; "
                             "CoT = one pass per response token", floatfmt=".1f")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "toy", formatter_class=HelpFormatter,
        help="the toy CoT lab: train direct and CoT gpt_mini models, accuracy per K",
        description=__doc__ + "\nWithout a subcommand, runs the whole study: trains a direct "
        "and a CoT model with the same loop, evaluates accuracy for K = 2..8 (7 and 8 are "
        "out of distribution) on held-out problems, classifies every failure, and writes "
        "the run directory. Re-running the same command resumes.")
    _study_args(p, grid=True)
    p.add_argument("--out", default=DEFAULT_OUT, help="run directory")
    p.set_defaults(func=cmd_study)
    tsub = p.add_subparsers(dest="toy_command", metavar="SUBCOMMAND")

    t = tsub.add_parser("train", formatter_class=HelpFormatter,
                        help="train one regime's gpt_mini into RUN/checkpoints/",
                        description="Train one gpt_mini on one regime's texts with the shared "
                        "SFT loop (prompt-masked cross-entropy, AdamW, clip 1.0). Resumable.")
    _study_args(t, grid=False)
    t.add_argument("--regime", choices=["direct", "cot", "simplified", "half"], default="cot",
                   help="response format: direct '18#', cot '{3+4=7;...}18#', simplified "
                        "(every other step), half (a seeded random half of the steps)")
    t.add_argument("--out", default=DEFAULT_OUT, help="run directory")
    t.set_defaults(func=cmd_train)

    e = tsub.add_parser("eval", formatter_class=HelpFormatter,
                        help="evaluate a toy checkpoint per K",
                        description="Greedy-decode the checkpoint's held-out problems (the "
                        "split is rebuilt from the checkpoint's config), extract answers, "
                        "classify errors, print and save accuracy per K.")
    e.add_argument("--checkpoint", required=True, help="checkpoint directory")
    e.add_argument("--out", default=None, help="run directory [default: the checkpoint dir]")
    e.add_argument("--device", default=None, help="auto, cpu, cuda ...")
    e.set_defaults(func=cmd_eval)

    s = tsub.add_parser("simulate", formatter_class=HelpFormatter,
                        help="serial-compute budget table for L layers and K digits",
                        description="The seed's budget model: direct needs K-1 serial adds in "
                        "one pass of L layers; CoT spends one pass per response token.")
    s.add_argument("--layers", type=int_list, default=[4], help="L values, e.g. 2,4,8")
    s.add_argument("--k", type=int_list, default=[2, 3, 4, 5, 6, 7, 8], help="K values, e.g. 2-8")
    s.set_defaults(func=cmd_simulate)
    register_scale(tsub)
