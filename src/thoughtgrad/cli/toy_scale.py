# SPDX-License-Identifier: MIT
"""Test-time compute subcommands of ``thoughtgrad toy`` (seed 004).

    thoughtgrad toy scale --checkpoint D [--checkpoint D ...] --samples 1,2,4,...,64
    thoughtgrad toy loops --checkpoint D --loops 1,2,4,8
    thoughtgrad toy knobs --out RUN

Each writes the tidy ``scale`` table (task, model, knob, k, n, accuracy, pass_at_n,
compute_tokens, compute_flops, ...) into a run directory and prints it per K.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import pandas as pd

from thoughtgrad.cli.common import (
    HelpFormatter,
    add_device_option,
    add_out_option,
    int_list,
    positive_int,
    print_table,
)
from thoughtgrad.cli.options import (
    add_config_options,
    add_set_option,
    given_options,
    overrides_of,
)
from thoughtgrad.errors import UserError

DEFAULT_SCALE_OUT = "runs/testtime-scale"
DEFAULT_KNOBS_OUT = "runs/testtime-knobs"
DEFAULT_LOOPS_OUT = "runs/testtime-loops"


SCALE_SAMPLES = (1, 2, 4, 8, 16, 32, 64)
"""``toy scale``'s sample budgets."""
KNOBS_SAMPLES = (1, 2, 4, 8, 16)
"""``toy knobs``' sample budgets."""


def _sampling_args(p: argparse.ArgumentParser, *, samples: tuple[int, ...]) -> None:
    from thoughtgrad.evaluate.scaling import SampleConfig

    add_config_options(p.add_argument_group("sampling"), SampleConfig(samples=samples),
                       prefix="sampling.", flags={"seed": "--sample-seed"},
                       types_={"temperature": float, "top_k": int, "top_p": float})


def _sample_config(args: argparse.Namespace, *, samples: tuple[int, ...]):
    from thoughtgrad.evaluate.scaling import SampleConfig

    return given_options(SampleConfig(samples=samples), args, prefix="sampling.")


def _check_loops(loops: list[int]) -> tuple[int, ...]:
    for r in loops:
        if r < 1:
            raise UserError(f"loops (r) must be >= 1, got {r}")
    return tuple(loops)


def print_scale(scale: pd.DataFrame) -> None:
    """Per (task, model): one line per K, accuracy and pass@n (%) per knob and budget."""
    for (task, model), part in scale.groupby(["task", "model"], sort=False):
        view = part.copy()
        view["col"] = [
            {"samples": f"maj@{n}", "loops": f"r={n}", "parameters": f"L={n}",
             "tokens": "cot", "greedy": "greedy"}.get(kn, f"{kn}{n}")
            for kn, n in zip(view["knob"], view["n"], strict=True)]
        acc = view.pivot_table(index="k", columns="col", values="accuracy", sort=False) * 100
        samp = view[view["knob"] == "samples"]
        if not samp.empty:
            pas = samp.pivot_table(index="k", columns="n", values="pass_at_n") * 100
            pas.columns = [f"pass@{n}" for n in pas.columns]
            acc = acc.join(pas)
        flops = view.groupby("k")["compute_flops"].max()
        acc["MFLOP/problem (max)"] = flops / 1e6
        print_table(acc.reset_index(), title=f"\n{task}, {model}: accuracy per K (%)",
                    floatfmt=".1f")


def _device(name: str) -> str:
    from thoughtgrad.config import resolve_device

    return str(resolve_device(name))


def cmd_scale(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.scale import scale_checkpoints
    from thoughtgrad.models.gpt_mini import read_checkpoint_meta
    from thoughtgrad.runs.store import RunDir

    sampling = _sample_config(args, samples=SCALE_SAMPLES)
    loops = _check_loops(args.loops) if args.loops else ()
    device = _device(args.device)
    for ckpt in args.checkpoint:
        read_checkpoint_meta(ckpt)  # one-line error for a missing checkpoint, before writing
    run = RunDir.create(args.out, command="toy scale",
                        config={"checkpoints": [str(c) for c in args.checkpoint],
                                "sampling": dataclasses.asdict(sampling),
                                "loops": list(loops)}, seed=sampling.seed,
                        identity={"sampling": dataclasses.asdict(sampling)})
    t0 = time.perf_counter()
    with run.recording():
        rows = scale_checkpoints(run, args.checkpoint, sampling, loops, device)
    run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    print_scale(rows)
    print(f"\nscale table: {run.table_path('scale')}")
    return 0


def cmd_loops(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.scale import loop_checkpoint
    from thoughtgrad.runs.store import RunDir

    loops = _check_loops(args.loops)
    run = RunDir.create(args.out, command="toy loops",
                        config={"checkpoint": str(args.checkpoint), "loops": list(loops)},
                        identity={"checkpoint": str(Path(args.checkpoint).resolve())})
    with run.recording():
        rows, trained = loop_checkpoint(run, args.checkpoint, loops, _device(args.device))
    run.set_status("completed")
    print_scale(rows)
    print(f"\ntrained at r = {trained}; scale table: {run.table_path('scale')}")
    return 0


def knobs_config(args: argparse.Namespace):
    """The KnobsConfig the options describe: ``--steps`` keeps warm-up a tenth of the run
    (:meth:`~thoughtgrad.train.sft.TrainConfig.with_steps`), the other options replace
    their field, and every ``--set`` applies to the shared toy config (``--set
    train.warmup_steps=1``, ``--set eval_ks=2,3``)."""
    from thoughtgrad.config import apply_overrides
    from thoughtgrad.experiments.testtime import KnobsConfig

    base = KnobsConfig()
    given = dict(vars(args))
    steps = given.pop("toy.train.steps", None)
    if steps is not None:
        base = dataclasses.replace(base, toy=dataclasses.replace(
            base.toy, train=base.toy.train.with_steps(steps)))
    cfg = given_options(base, argparse.Namespace(**given))
    return dataclasses.replace(cfg, toy=apply_overrides(cfg.toy, overrides_of(args)))


def cmd_knobs(args: argparse.Namespace) -> int:
    from thoughtgrad.cli.common import bar_factory
    from thoughtgrad.experiments.testtime import knobs_identity, run_knobs
    from thoughtgrad.runs.store import RunDir

    cfg = knobs_config(args)
    run = RunDir.create(args.out, command="toy knobs", config=cfg, seed=cfg.toy.seed,
                        identity=knobs_identity(cfg))
    t0 = time.perf_counter()
    with run.recording():
        scale = run_knobs(cfg, run, progress_factory=bar_factory())
    run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    print_scale(scale)
    print(f"\nrun directory: {run.path}  (tables: scale, timings)")
    return 0


def register_scale(tsub: argparse._SubParsersAction) -> None:
    """Add ``scale``, ``loops`` and ``knobs`` under ``thoughtgrad toy``."""
    s = tsub.add_parser(
        "scale", formatter_class=HelpFormatter,
        help="accuracy vs test-time samples: greedy, majority vote, pass@n per K",
        description="For each checkpoint and each K of its held-out split: greedy accuracy; "
        "N = max(samples) sampled responses per problem drawn once in one batch; majority "
        "vote over the first n (ties to the answer seen first, unparsed answers abstain) "
        "and unbiased pass@n from the c correct of N. Compute per problem in forward token "
        "positions and FLOPs.")
    s.add_argument("--checkpoint", action="append", required=True,
                   help="toy checkpoint directory (repeatable: direct and CoT models)")
    _sampling_args(s, samples=SCALE_SAMPLES)
    s.add_argument("--loops", type=int_list, default=None,
                   help="also greedy-decode at these loop counts r (looped models)")
    add_device_option(s)
    add_out_option(s, default=DEFAULT_SCALE_OUT, what="run directory")
    add_set_option(s)
    s.set_defaults(func=cmd_scale)

    lp = tsub.add_parser(
        "loops", formatter_class=HelpFormatter,
        help="accuracy of a looped checkpoint vs loop count r and K",
        description="Greedy accuracy per K of a (looped) gpt_mini run at each r in --loops, "
        "including r beyond the trained count (recurrent depth, seed 004).")
    lp.add_argument("--checkpoint", required=True, help="toy checkpoint directory")
    lp.add_argument("--loops", type=int_list, default=[1, 2, 3, 4, 6, 8],
                    help="loop counts r, e.g. 1,2,4,8")
    add_device_option(lp)
    add_out_option(lp, default=DEFAULT_LOOPS_OUT, what="run directory")
    lp.set_defaults(func=cmd_loops)

    k = tsub.add_parser(
        "knobs", formatter_class=HelpFormatter,
        help="train and compare the test-time knobs: parameters, tokens, samples, loops",
        description="Per task family: direct models at L = 2, 4, 8 (parameters), the CoT "
        "model (tokens), majority vote over samples of the direct and CoT models (samples), "
        "and a looped direct model evaluated at r >= r_train (loops); all trained with the "
        "same loop; one tidy scale table of accuracy per K against compute. Resumable.")
    from thoughtgrad.experiments.testtime import KnobsConfig

    base = KnobsConfig()
    counts = {n: positive_int for n in ("cot_layers", "loop_layers", "loop_train", "steps",
                                        "batch_size", "d_model", "n_head", "train_size",
                                        "eval_per_k")}
    add_config_options(k.add_argument_group("models"), base,
                       only=("tasks", "layers", "cot_layers", "loop_layers", "loop_train",
                             "loops"), flags={"tasks": "--task"}, types_=counts)
    t = k.add_argument_group(
        "training (shared by every model)",
        "--steps keeps warm-up a tenth of the run (--set train.warmup_steps=N to change); "
        "--set applies to the shared toy config (e.g. --set eval_ks=2,3)")
    add_config_options(t, base.toy.train, prefix="toy.train.", only=("steps", "batch_size", "lr"),
                       types_=counts)
    add_config_options(t, base.toy.model, prefix="toy.model.", only=("d_model", "n_head"),
                       flags={"n_head": "--heads"}, types_=counts)
    add_config_options(t, base.toy, prefix="toy.",
                       only=("train_size", "eval_per_k", "seed", "device"), types_=counts)
    add_set_option(t)
    _sampling_args(k, samples=KNOBS_SAMPLES)
    add_out_option(k, default=DEFAULT_KNOBS_OUT, what="run directory")
    k.set_defaults(func=cmd_knobs)
