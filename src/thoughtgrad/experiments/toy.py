# SPDX-License-Identifier: MIT
"""The toy chain-of-thought study (seed 003): train one gpt_mini per regime with the same
loop, evaluate accuracy per K, classify every failure.

Regimes are only a dataset choice: ``direct`` trains on ``18#``, ``cot`` on
``{3+4=7;7+5=12;12+6=18}18#``, ``simplified`` on every other step. The study can run a
grid of task families and training-set sizes, so the question "is the direct model's
failure depth or memorisation?" is settled by measurement.

Speed (issue 12, measured by ``benchmarks/toy_train.py``): d=128 kernels are too small
for two threads to share one step (each of thousands of kernels per step ends in a
barrier; on a busy machine the second thread is often descheduled), so a model can train
on ``threads`` torch threads and, on a CPU, the regimes of a cell can train at once in
worker processes, one per core (``parallel``). On a quiet 2-core machine neither pays
(one model on two threads ran 1.6x one thread; sequential 1.35x parallel), so both are
off by default. The loop, optimiser, batches and seeds are the same either way; only
floating-point summation order inside kernels may differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import queue
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

PARALLEL_MIN_STEPS = 200
"""Shortest run trained in worker processes when ``parallel`` is None (a worker takes a
few seconds to start: it imports torch)."""
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
    threads: int | None = None
    """torch threads while a model trains on a CPU (None = torch's default: all cores;
    1 pays on a busy machine, where a second thread is often descheduled)"""
    parallel: bool | None = False
    """train a cell's regimes at once, one worker process each (CPU only); None = when
    there are at least two cores and the run is long enough to repay starting workers
    (``PARALLEL_MIN_STEPS``). Off by default: on a quiet 2-core machine one model on both
    cores beats two models on one core each (benchmarks/toy_train.py, part 2); with
    ``threads=1`` it pays when the machine is shared"""

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
        if self.threads is not None and self.threads < 1:
            raise UserError(f"threads must be >= 1 or None, got {self.threads}")
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

    with torch_threads(cfg.threads if device.type == "cpu" else None):
        result = train(cfg.train, model, batches, device=device, checkpoint_dir=directory,
                       save_model=save, load_model=load, progress=progress)
    return model, result


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block on ``n`` torch intra-op threads (None: leave the setting alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def parallel_workers(cfg: ToyConfig, n_regimes: int) -> int:
    """Worker processes to train ``n_regimes`` regimes at once (1 = in this process)."""
    if cfg.parallel is False or n_regimes < 2 or resolve_device(cfg.device).type != "cpu":
        return 1
    if cfg.parallel is None and cfg.train.steps < PARALLEL_MIN_STEPS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(n_regimes, (cores or 1) // (cfg.threads or 1)))


def _train_worker(cfg: ToyConfig, split: Split, regime: str, directory: Path,
                  updates: Any) -> None:
    """Worker-process body: train one regime (checkpointed into ``directory``); send
    ``("progress", regime, (done, total, loss))`` per step, then ``("done", regime,
    result)`` or ``("error", regime, exception)`` to the ``updates`` queue."""
    def progress(done: int, total: int, loss: float) -> None:
        updates.put(("progress", regime, (done, total, loss)))

    try:
        result = train_regime(cfg, split, regime, directory, progress=progress)[1]
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which re-raises
        try:
            updates.put(("error", regime, exc))
        except Exception:  # noqa: BLE001 - an exception that does not pickle
            updates.put(("error", regime, RuntimeError(f"{type(exc).__name__}: {exc}")))
        return
    updates.put(("done", regime, result))


def train_regimes(cfg: ToyConfig, split: Split, directories: dict[str, Path], *,
                  progress_factory: Callable[[str, int], Callable[[int, int, float], None]]
                  | None = None) -> Iterator[tuple[str, GPTMini | None, TrainResult]]:
    """Train every regime in ``directories`` (regime -> checkpoint directory); yield
    ``(regime, model in eval mode, result)`` in the given order. With one worker (see
    :func:`parallel_workers`) each regime trains here when its turn comes; otherwise all
    train at once in spawned processes and each model is read back from its final
    checkpoint (None when its training stopped early). A worker's error is raised here;
    an error or signal here (Ctrl-C, SIGTERM) terminates the workers, whose last
    checkpoints let the next run resume."""
    bars = {r: progress_factory(f"train {d.name}", cfg.train.steps) if progress_factory
            else None for r, d in directories.items()}
    workers = parallel_workers(cfg, len(directories))
    if workers == 1:
        for r, d in directories.items():
            yield (r, *train_regime(cfg, split, r, d, progress=bars[r]))
        return
    log.info("training %d regimes in %d worker processes", len(directories), workers)
    ctx = multiprocessing.get_context("spawn")
    updates = ctx.Queue()
    waiting = list(directories)
    running: dict[str, Any] = {}
    results: dict[str, TrainResult] = {}
    try:
        while len(results) < len(directories):
            while waiting and len(running) < workers:
                r = waiting.pop(0)
                running[r] = ctx.Process(target=_train_worker, name=f"train-{r}", daemon=True,
                                         args=(cfg, split, r, directories[r], updates))
                running[r].start()
            try:
                kind, regime, payload = updates.get(timeout=1.0)
            except queue.Empty:
                dead = [r for r, p in running.items() if p.exitcode is not None]
                if dead:
                    raise RuntimeError(f"toy training worker for {dead[0]!r} exited with code "
                                       f"{running[dead[0]].exitcode}") from None
                continue
            if kind == "progress":
                if bars[regime] is not None:
                    bars[regime](*payload)
            elif kind == "error":
                raise payload
            else:
                results[regime] = payload
                running.pop(regime).join()
    finally:
        for p in running.values():
            if p.is_alive():
                p.terminate()
            p.join()
    device = resolve_device(cfg.device)
    for r, d in directories.items():
        model = None if results[r].stopped_reason else GPTMini.load(d, device=device)
        yield r, model, results[r]


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
            todo = {r: run.path / "checkpoints" / checkpoint_name(cell, r)
                    for r in cell.regimes if (task_name, size, r) not in done}
            if not todo:
                continue
            split = split_for(cell)
            for regime, model, result in train_regimes(cell, split, todo,
                                                       progress_factory=progress_factory):
                name = checkpoint_name(cell, regime)
                if result.stopped_reason or model is None:
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
