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

from thoughtgrad.cli.common import HelpFormatter, int_list, positive_int, print_table
from thoughtgrad.errors import UserError

DEFAULT_SCALE_OUT = "runs/testtime-scale"
DEFAULT_KNOBS_OUT = "runs/testtime-knobs"


def _sampling_args(p: argparse.ArgumentParser, *, samples: str) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--samples", type=int_list, default=int_list(samples),
                   help=f"sample budgets n; N = the largest is drawn once per problem "
                        f"[{samples}]")
    g.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (> 0)")
    g.add_argument("--top-k", type=int, default=None, help="keep the k most likely tokens")
    g.add_argument("--top-p", type=float, default=None, help="nucleus mass in (0, 1]")
    g.add_argument("--sample-seed", type=int, default=0, help="seed of the sampling generator")


def _sample_config(args: argparse.Namespace):
    from thoughtgrad.evaluate.scaling import SampleConfig

    return SampleConfig(samples=tuple(args.samples), temperature=args.temperature,
                        top_k=args.top_k, top_p=args.top_p, seed=args.sample_seed)


def _check_loops(loops: list[int]) -> tuple[int, ...]:
    for r in loops:
        if r < 1:
            raise UserError(f"loops (r) must be >= 1, got {r}")
    return tuple(loops)


def model_label(meta: dict) -> str:
    """``direct-L4``, ``cot-L4`` or ``looped-L2-r3`` from a toy checkpoint's config."""
    base = f"{meta.get('regime', 'model')}-L{meta.get('n_layer')}"
    r = int(meta.get("n_loops", 1))
    return f"looped-L{meta.get('n_layer')}-r{r}" if r > 1 else base


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


def _device(name: str | None) -> str:
    from thoughtgrad.config import resolve_device

    return str(resolve_device(name or "auto"))


SCALE_KEY = ("checkpoint", "knob", "k", "n")
"""What one ``toy scale`` / ``toy loops`` row measures; a re-run skips keys already there."""


def _resolved(path: object) -> str:
    return str(Path(str(path)).resolve())


def checkpoint_digest(ckpt: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a checkpoint's weights file."""
    from thoughtgrad.models.gpt_mini import WEIGHTS_FILE
    from thoughtgrad.runs.store import file_sha256

    return file_sha256(Path(ckpt) / WEIGHTS_FILE)[:16]


def measured(run, ckpt: str | Path, digest: str) -> set[tuple[str, int, int]]:
    """``(knob, k, n)`` of the rows already in ``run``'s scale table for ``ckpt`` (matched
    by resolved path). One-line :class:`UserError` when those rows were measured on other
    weights (the checkpoint was retrained in place)."""
    if not run.has_table("scale"):
        return set()
    prev = run.read("scale")
    if "checkpoint" not in prev:
        return set()
    prev = prev[prev["checkpoint"].map(_resolved) == _resolved(ckpt)]
    if "checkpoint_sha256" in prev:
        other = set(prev["checkpoint_sha256"].dropna()) - {digest}
        if other:
            raise UserError(f"{run.path}: rows of checkpoint {ckpt} were measured on other "
                            "weights (it changed since); use a new --out")
    return {(str(kn), int(k), int(n)) for kn, k, n in
            prev[["knob", "k", "n"]].itertuples(index=False)}


def only_new(df: pd.DataFrame, done: set[tuple[str, int, int]]) -> pd.DataFrame:
    """Rows of ``df`` whose ``(knob, k, n)`` is not in ``done``."""
    keep = [(str(kn), int(k), int(n)) not in done
            for kn, k, n in zip(df["knob"], df["k"], df["n"], strict=True)]
    return df[keep].reset_index(drop=True)


def rows_of(run, checkpoints: list[str]) -> pd.DataFrame:
    """The scale rows of the given checkpoints (every run so far, by resolved path)."""
    prev = run.read("scale")
    wanted = {_resolved(c) for c in checkpoints}
    return prev[prev["checkpoint"].map(_resolved).isin(wanted)].reset_index(drop=True)


def cmd_scale(args: argparse.Namespace) -> int:
    from thoughtgrad.evaluate.scaling import (
        greedy_study,
        label_scale_rows,
        loop_study,
        sample_study,
    )
    from thoughtgrad.experiments.toy import REGIME_STYLE, config_from_checkpoint, split_for
    from thoughtgrad.models.gpt_mini import GPTMini, read_checkpoint_meta
    from thoughtgrad.runs.store import RunDir
    from thoughtgrad.tasks.toy import get_task

    sampling = _sample_config(args)
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
    for ckpt in args.checkpoint:
        cfg, regime = config_from_checkpoint(ckpt)
        digest = checkpoint_digest(ckpt)
        done = measured(run, ckpt, digest)
        ks = sorted(cfg.eval_ks)

        def missing(knob: str, n: int, done: set = done, ks: list = ks) -> bool:
            return any((knob, k, n) not in done for k in ks)

        todo_loops = [r for r in loops if missing("loops", r)]
        todo_samples = any(missing("samples", n) for n in sampling.samples)
        if not (missing("greedy", 1) or todo_samples or todo_loops):
            continue
        meta = read_checkpoint_meta(ckpt)
        model = GPTMini.load(ckpt, device=device)
        task, style, split = get_task(cfg.task), REGIME_STYLE[regime], split_for(cfg)
        parts = []
        if missing("greedy", 1):
            parts.append(greedy_study(model, task, split.eval, style, device=device))
        if todo_samples:
            parts.append(sample_study(model, task, split.eval, style, sampling, device=device))
        if todo_loops:
            parts.append(loop_study(model, task, split.eval, style, todo_loops, device=device))
        df = only_new(pd.concat(parts, ignore_index=True), done)
        labels = {"task": cfg.task, "model": model_label(meta), "regime": regime,
                  "n_layer": model.config.n_layer, "n_loops_train": model.config.n_loops,
                  "params": model.num_params()}
        df = label_scale_rows(df, labels, temperature=sampling.temperature,
                              train_ks=cfg.train_ks)
        df["checkpoint"], df["checkpoint_sha256"] = str(ckpt), digest
        run.append("scale", df)
    run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    print_scale(rows_of(run, args.checkpoint))
    print(f"\nscale table: {run.table_path('scale')}")
    return 0


def cmd_loops(args: argparse.Namespace) -> int:
    from thoughtgrad.evaluate.scaling import label_scale_rows, loop_study
    from thoughtgrad.experiments.toy import REGIME_STYLE, config_from_checkpoint, split_for
    from thoughtgrad.models.gpt_mini import GPTMini, read_checkpoint_meta
    from thoughtgrad.runs.store import RunDir
    from thoughtgrad.tasks.toy import get_task

    loops = _check_loops(args.loops)
    device = _device(args.device)
    cfg, regime = config_from_checkpoint(args.checkpoint)
    meta = read_checkpoint_meta(args.checkpoint)
    out = Path(args.out) if args.out else Path(args.checkpoint)
    run = RunDir.create(out, command="toy loops",
                        config={"checkpoint": str(args.checkpoint), "loops": list(loops)},
                        identity={"checkpoint": _resolved(args.checkpoint)})
    digest = checkpoint_digest(args.checkpoint)
    done = measured(run, args.checkpoint, digest)
    todo = [r for r in loops if any(("loops", k, r) not in done for k in cfg.eval_ks)]
    model = GPTMini.load(args.checkpoint, device=device)
    if todo:
        df = loop_study(model, get_task(cfg.task), split_for(cfg).eval, REGIME_STYLE[regime],
                        todo, device=device)
        labels = {"task": cfg.task, "model": model_label(meta), "regime": regime,
                  "n_layer": model.config.n_layer, "n_loops_train": model.config.n_loops,
                  "params": model.num_params()}
        df = label_scale_rows(only_new(df, done), labels, temperature=0.0,
                              train_ks=cfg.train_ks)
        df["checkpoint"], df["checkpoint_sha256"] = str(args.checkpoint), digest
        run.append("scale", df)
    run.set_status("completed")
    rows = rows_of(run, [args.checkpoint])
    print_scale(rows[rows["knob"] == "loops"])
    print(f"\ntrained at r = {model.config.n_loops}; scale table: {run.table_path('scale')}")
    return 0


def _knobs_toy(args: argparse.Namespace, toy):
    """The shared toy config: the knobs defaults with the options given applied."""
    from thoughtgrad.config import apply_overrides

    model = {k: v for k, v in {"d_model": args.d_model, "n_head": args.heads}.items()
             if v is not None}
    train = {k: v for k, v in {"steps": args.steps, "batch_size": args.batch_size,
                               "lr": args.lr}.items() if v is not None}
    top = {k: v for k, v in {"train_size": args.train_size, "eval_per_k": args.eval_per_k,
                             "seed": args.seed, "device": args.device}.items()
           if v is not None}
    if "steps" in train:  # warm-up stays a tenth of the run, as at the default 1600 / 160
        train["warmup_steps"] = max(1, train["steps"] // 10)
    toy = dataclasses.replace(toy, model=dataclasses.replace(toy.model, **model),
                              train=dataclasses.replace(toy.train, **train), **top)
    return apply_overrides(toy, args.overrides)


def cmd_knobs(args: argparse.Namespace) -> int:
    from thoughtgrad.cli.common import bar_factory
    from thoughtgrad.experiments.testtime import KnobsConfig, knobs_identity, run_knobs
    from thoughtgrad.runs.store import RunDir

    base = KnobsConfig()
    toy = _knobs_toy(args, base.toy)
    chosen = {"tasks": tuple(args.task) if args.task else None,
              "layers": tuple(args.layers) if args.layers else None,
              "cot_layers": args.cot_layers, "loop_layers": args.loop_layers,
              "loop_train": args.loop_train,
              "loops": _check_loops(args.loops) if args.loops else None}
    cfg = dataclasses.replace(base, toy=toy, sampling=_sample_config(args),
                              **{k: v for k, v in chosen.items() if v is not None})
    run = RunDir.create(args.out, command="toy knobs", config=cfg, seed=toy.seed,
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
    _sampling_args(s, samples="1,2,4,8,16,32,64")
    s.add_argument("--loops", type=int_list, default=None,
                   help="also greedy-decode at these loop counts r (looped models)")
    s.add_argument("--device", default=None, help="auto, cpu, cuda ...")
    s.add_argument("--out", default=DEFAULT_SCALE_OUT, help="run directory")
    s.set_defaults(func=cmd_scale)

    lp = tsub.add_parser(
        "loops", formatter_class=HelpFormatter,
        help="accuracy of a looped checkpoint vs loop count r and K",
        description="Greedy accuracy per K of a (looped) gpt_mini run at each r in --loops, "
        "including r beyond the trained count (recurrent depth, seed 004).")
    lp.add_argument("--checkpoint", required=True, help="toy checkpoint directory")
    lp.add_argument("--loops", type=int_list, default=[1, 2, 3, 4, 6, 8],
                    help="loop counts r, e.g. 1,2,4,8")
    lp.add_argument("--device", default=None, help="auto, cpu, cuda ...")
    lp.add_argument("--out", default=None, help="run directory [default: the checkpoint dir]")
    lp.set_defaults(func=cmd_loops)

    k = tsub.add_parser(
        "knobs", formatter_class=HelpFormatter,
        help="train and compare the test-time knobs: parameters, tokens, samples, loops",
        description="Per task family: direct models at L = 2, 4, 8 (parameters), the CoT "
        "model (tokens), majority vote over samples of the direct and CoT models (samples), "
        "and a looped direct model evaluated at r >= r_train (loops); all trained with the "
        "same loop; one tidy scale table of accuracy per K against compute. Resumable.")
    g = k.add_argument_group("models")
    g.add_argument("--task", type=lambda v: v.split(","), default=None,
                   help="task families [addition,fold]")
    g.add_argument("--layers", type=int_list, default=None, help="direct depths L [2,4,8]")
    g.add_argument("--cot-layers", type=positive_int, default=None,
                   help="depth of the CoT model and of the sampled direct model [4]")
    g.add_argument("--loop-layers", type=positive_int, default=None,
                   help="blocks in the looped group [2]")
    g.add_argument("--loop-train", type=positive_int, default=None,
                   help="loops r at training [2]")
    g.add_argument("--loops", type=int_list, default=None,
                   help="loop counts r at evaluation [1,2,3,4,6,8]")
    t = k.add_argument_group("training (shared by every model)")
    t.add_argument("--steps", type=positive_int, default=None,
                   help="optimizer steps [1600]; warm-up is a tenth of them (--set "
                        "train.warmup_steps=N to change)")
    t.add_argument("--batch-size", type=positive_int, default=None, help="[32]")
    t.add_argument("--lr", type=float, default=None, help="peak AdamW learning rate [1e-3]")
    t.add_argument("--d-model", type=positive_int, default=None, help="width d [128]")
    t.add_argument("--heads", type=positive_int, default=None, help="attention heads [4]")
    t.add_argument("--train-size", type=positive_int, default=None,
                   help="distinct training problems [3000]")
    t.add_argument("--eval-per-k", type=positive_int, default=None,
                   help="held-out problems per K [100]")
    t.add_argument("--seed", type=int, default=None, help="data, init and batch seed [0]")
    t.add_argument("--device", default=None, help="auto, cpu, cuda ...")
    t.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a toy config field, e.g. --set train.warmup_steps=50")
    _sampling_args(k, samples="1,2,4,8,16")
    k.add_argument("--out", default=DEFAULT_KNOBS_OUT, help="run directory")
    k.set_defaults(func=cmd_knobs)
