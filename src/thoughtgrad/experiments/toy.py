# SPDX-License-Identifier: MIT
"""The toy chain-of-thought study (seed 003): train one gpt_mini per regime with the same
loop, evaluate accuracy per K, classify every failure.

Regimes are only a dataset choice: ``direct`` trains on ``18#``, ``cot`` on
``{3+4=7;7+5=12;12+6=18}18#``, ``simplified`` on every other step. The study can run a
grid of task families and training-set sizes, so the question "is the direct model's
failure depth or memorisation?" is settled by measurement.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from thoughtgrad.config import resolve_device, seed_everything
from thoughtgrad.errors import UserError
from thoughtgrad.evaluate.accuracy import evaluate_accuracy
from thoughtgrad.evaluate.tables import accuracy_table, error_counts
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig, read_checkpoint_meta
from thoughtgrad.runs.store import RunDir
from thoughtgrad.tasks.toy import (
    TOKENIZER,
    Problem,
    Split,
    ToyTask,
    check_k,
    encode_example,
    get_task,
    make_split,
    response,
)
from thoughtgrad.train.sft import Batch, TrainConfig, TrainResult, make_batches, train

log = logging.getLogger(__name__)

REGIME_STYLE = {"direct": "answer", "cot": "cot", "simplified": "simplified", "half": "half"}


@dataclass(frozen=True)
class ToyConfig:
    """The toy study; defaults are the seed's (3000 problems, 2000 steps, batch 64)."""

    task: str = "addition"
    """task family: addition (a digit sum) or fold (left fold of + - * mod 10, truly
    serial); ``thoughtgrad toy`` sweeps a comma-separated list"""
    train_size: int = 3000
    """training problems, distinct while a K's problem space allows (K=2 has only 100 sums,
    so they repeat there); ``thoughtgrad toy`` sweeps a comma-separated list, e.g.
    3000,100000"""
    train_ks: tuple[int, ...] = (2, 3, 4, 5, 6)
    """K values drawn uniformly for training, e.g. 2-6"""
    eval_ks: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
    """K values evaluated; those outside the training Ks are reported as out of
    distribution"""
    eval_per_k: int = 200
    """held-out problems per K (at most a fifth of that K's space)"""
    regimes: tuple[str, ...] = ("direct", "cot")
    """response formats trained and evaluated: direct '18#' (answer only), cot
    '{3+4=7;...}18#', simplified (every other step), half (a seeded random half of the
    steps)"""
    seed: int = 0
    """seed for the split, init and batches"""
    device: str = "auto"
    """auto (CUDA when present, else CPU), cpu, cuda, cuda:1 ..."""
    model: GPTMiniConfig = field(
        default_factory=lambda: GPTMiniConfig(vocab_size=TOKENIZER.vocab_size))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(checkpoint_every=500))

    def __post_init__(self) -> None:
        get_task(self.task)
        for name in ("train_ks", "eval_ks"):
            if not getattr(self, name):
                raise UserError(f"{name} is empty: give at least one K")
        for k in (*self.train_ks, *self.eval_ks):
            check_k(k)
        if self.train_size < 1:
            raise UserError(f"train_size must be >= 1, got {self.train_size}")
        if self.eval_per_k < 1:
            raise UserError(f"eval_per_k must be >= 1, got {self.eval_per_k}")
        for r in self.regimes:
            if r not in REGIME_STYLE:
                raise UserError(f"unknown regime {r!r}; choose from {sorted(REGIME_STYLE)}")
        if self.model.vocab_size < TOKENIZER.vocab_size:
            raise UserError(f"model vocab_size {self.model.vocab_size} < toy vocabulary "
                            f"{TOKENIZER.vocab_size}")


def split_for(cfg: ToyConfig) -> Split:
    return make_split(get_task(cfg.task), train_size=cfg.train_size, train_ks=cfg.train_ks,
                      eval_ks=cfg.eval_ks, eval_per_k=cfg.eval_per_k, seed=cfg.seed)


def toy_batches(task: ToyTask, problems: Sequence[Problem], style: str, *, batch_size: int,
                seed: int) -> Callable[[int], Batch]:
    """Step -> batch: ``batch_size`` training examples drawn with a generator seeded by
    (seed, step), so a resumed run sees the same batches."""
    examples = [encode_example(p.prompt(), response(task, p, style, seed=seed)) for p in problems]
    needed = max(len(x) for x, _ in examples)
    if needed > 10_000:
        raise UserError("toy examples are unexpectedly long")
    return make_batches(examples, batch_size=batch_size, seed=seed, pad_id=TOKENIZER.pad_id)


def checkpoint_name(cfg: ToyConfig, regime: str) -> str:
    return f"{cfg.task}-n{cfg.train_size}-{regime}"


def train_regime(cfg: ToyConfig, split: Split, regime: str, directory: Path, *,
                 progress: Callable[[int, int, float], None] | None = None
                 ) -> tuple[GPTMini, TrainResult]:
    """Train a fresh seeded gpt_mini on one regime's texts; checkpoint into ``directory``."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    task = get_task(cfg.task)
    style = REGIME_STYLE[regime]
    longest = max(len(p.prompt()) + len(response(task, p, style)) for p in split.train)
    if longest > cfg.model.block_size:
        raise UserError(f"training texts of {longest} tokens exceed block_size "
                        f"{cfg.model.block_size}; raise model.block_size")
    model = GPTMini(dataclasses.replace(cfg.model, seed=cfg.seed))
    batches = toy_batches(task, split.train, style, batch_size=cfg.train.batch_size,
                           seed=cfg.seed)
    meta = {"task": cfg.task, "regime": regime, "style": style, "train_size": cfg.train_size,
            "train_ks": list(cfg.train_ks), "eval_ks": list(cfg.eval_ks),
            "eval_per_k": cfg.eval_per_k, "split_seed": cfg.seed}

    def save(m: GPTMini, d: Path) -> None:
        m.save(d, extra=meta)

    def load(m: torch.nn.Module, d: Path) -> None:
        m.load_state_dict(GPTMini.load(d).state_dict())

    result = train(cfg.train, model, batches, device=device, checkpoint_dir=directory,
                   save_model=save, load_model=load, progress=progress)
    return model, result


def evaluate_regime(cfg: ToyConfig, split: Split, regime: str, model: GPTMini) -> pd.DataFrame:
    """Accuracy rows for one trained regime, labelled with task, regime and train size."""
    device = resolve_device(cfg.device)
    task = get_task(cfg.task)
    df = evaluate_accuracy(model.to(device), task, split.eval, REGIME_STYLE[regime], device=device)
    df.insert(0, "task", cfg.task)
    df.insert(1, "regime", regime)
    df["train_size"] = cfg.train_size
    df["split"] = ["in_distribution" if k in cfg.train_ks else "out_of_distribution"
                   for k in df["k"]]
    return df


def config_from_checkpoint(directory: str | Path,
                           base: ToyConfig | None = None) -> tuple[ToyConfig, str]:
    """Rebuild the study config (task, split) and regime a toy checkpoint was trained with."""
    meta = read_checkpoint_meta(directory)
    if "task" not in meta or "regime" not in meta:
        raise UserError(f"checkpoint {directory}: config.json has no toy task/regime; was it "
                        "written by `thoughtgrad toy train`?")
    base = base or ToyConfig()
    cfg = dataclasses.replace(
        base, task=meta["task"], train_size=int(meta["train_size"]),
        train_ks=tuple(meta["train_ks"]), eval_ks=tuple(meta.get("eval_ks", base.eval_ks)),
        eval_per_k=int(meta.get("eval_per_k", base.eval_per_k)),
        seed=int(meta.get("split_seed", base.seed)))
    return cfg, str(meta["regime"])


def read_timings(run: RunDir) -> pd.DataFrame | None:
    """The run's ``timings`` table, one row per (task, train_size, regime): the last one
    written (an evaluation re-run after an interruption appends a second row)."""
    if not run.has_table("timings"):
        return None
    t = run.read("timings")
    return t.drop_duplicates(["task", "train_size", "regime"], keep="last").reset_index(drop=True)


def run_toy(cfg: ToyConfig, run: RunDir, *, tasks: Sequence[str] | None = None,
            train_sizes: Sequence[int] | None = None,
            progress_factory: Callable[[str, int], Callable[[int, int, float], None]] | None = None
            ) -> pd.DataFrame:
    """Train and evaluate every (task, train size, regime) cell; resumable.

    Finished cells (present in the ``accuracy`` table) are skipped; an unfinished cell's
    training resumes from its last checkpoint. Returns the whole ``accuracy`` table.
    """
    done: set[tuple[str, int, str]] = set()
    if run.has_table("accuracy"):
        prev = run.read("accuracy", columns=["task", "train_size", "regime"]).drop_duplicates()
        done = {(t, int(n), r) for t, n, r in prev.itertuples(index=False)}
    for task_name in tasks or [cfg.task]:
        for size in train_sizes or [cfg.train_size]:
            cell = dataclasses.replace(cfg, task=task_name, train_size=size)
            split = None
            for regime in cell.regimes:
                if (task_name, size, regime) in done:
                    continue
                split = split or split_for(cell)
                name = checkpoint_name(cell, regime)
                bar = (progress_factory(f"train {name}", cell.train.steps) if progress_factory
                       else None)
                model, result = train_regime(cell, split, regime, run.path / "checkpoints" / name,
                                             progress=bar)
                if result.stopped_reason:
                    raise UserError(f"training {name} stopped: {result.stopped_reason}")
                t1 = time.perf_counter()
                acc = evaluate_regime(cell, split, regime, model)
                eval_s = time.perf_counter() - t1
                # Timings first: a kill between the two appends re-runs only the evaluation,
                # and the timings table keeps the last row of each cell (see read_timings).
                run.append("timings", [{
                    "task": task_name, "train_size": size, "regime": regime,
                    "steps": cell.train.steps, "train_seconds": result.total_seconds,
                    "tokens_per_second": result.tokens_per_second,
                    "final_loss": result.final_loss, "eval_seconds": eval_s,
                    "distinct_train_problems": len(set(split.train))}])
                run.append("accuracy", acc)
    acc = run.read("accuracy")
    run.write("errors", error_counts(acc))
    run.write("accuracy_by_k", accuracy_table(acc))
    return acc
