# SPDX-License-Identifier: MIT
"""Test-time compute of trained toy checkpoints (seed 004), behind ``thoughtgrad toy scale``
and ``toy loops``: resumable ``scale`` rows per checkpoint, keyed by :data:`SCALE_KEY` and
tied to the checkpoint's weights by their SHA-256."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from thoughtgrad.errors import UserError
from thoughtgrad.evaluate.scaling import (
    SampleConfig,
    greedy_study,
    label_scale_rows,
    loop_study,
    sample_study,
)
from thoughtgrad.experiments.toy import REGIME_STYLE, config_from_checkpoint, split_for
from thoughtgrad.models.gpt_mini import WEIGHTS_FILE, GPTMini, read_checkpoint_meta
from thoughtgrad.runs.store import RunDir, file_sha256
from thoughtgrad.tasks.toy import get_task


def model_label(meta: dict) -> str:
    """``direct-L4``, ``cot-L4`` or ``looped-L2-r3`` from a toy checkpoint's config."""
    base = f"{meta.get('regime', 'model')}-L{meta.get('n_layer')}"
    r = int(meta.get("n_loops", 1))
    return f"looped-L{meta.get('n_layer')}-r{r}" if r > 1 else base


SCALE_KEY = ("checkpoint", "knob", "k", "n")
"""What one ``toy scale`` / ``toy loops`` row measures; a re-run skips keys already there."""


def _resolved(path: object) -> str:
    return str(Path(str(path)).resolve())


def checkpoint_digest(ckpt: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a checkpoint's weights file."""
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



def scale_checkpoints(run: RunDir, checkpoints: Sequence[str], sampling: SampleConfig,
                      loops: Sequence[int], device: str) -> pd.DataFrame:
    """Greedy, sampled (``sampling``) and looped (``loops``) accuracy per K of each toy
    checkpoint into ``run``'s scale table, skipping the (checkpoint, knob, k, n) already
    measured there; return the rows of these checkpoints."""
    for ckpt in checkpoints:
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
        df = label_scale_rows(df, _labels(cfg, regime, meta, model),
                              temperature=sampling.temperature, train_ks=cfg.train_ks)
        df["checkpoint"], df["checkpoint_sha256"] = str(ckpt), digest
        run.append("scale", df)
    return rows_of(run, list(checkpoints))


def loop_checkpoint(run: RunDir, ckpt: str, loops: Sequence[int], device: str
                    ) -> tuple[pd.DataFrame, int]:
    """Greedy accuracy per K of one (looped) toy checkpoint at each loop count in
    ``loops`` into ``run``'s scale table (resumable); return its loop rows and the loop
    count it was trained at."""
    cfg, regime = config_from_checkpoint(ckpt)
    meta = read_checkpoint_meta(ckpt)
    digest = checkpoint_digest(ckpt)
    done = measured(run, ckpt, digest)
    todo = [r for r in loops if any(("loops", k, r) not in done for k in cfg.eval_ks)]
    model = GPTMini.load(ckpt, device=device)
    if todo:
        df = loop_study(model, get_task(cfg.task), split_for(cfg).eval, REGIME_STYLE[regime],
                        todo, device=device)
        df = label_scale_rows(only_new(df, done), _labels(cfg, regime, meta, model),
                              temperature=0.0, train_ks=cfg.train_ks)
        df["checkpoint"], df["checkpoint_sha256"] = str(ckpt), digest
        run.append("scale", df)
    rows = rows_of(run, [ckpt])
    return rows[rows["knob"] == "loops"], model.config.n_loops


def _labels(cfg, regime: str, meta: dict, model: GPTMini) -> dict:
    return {"task": cfg.task, "model": model_label(meta), "regime": regime,
            "n_layer": model.config.n_layer, "n_loops_train": model.config.n_loops,
            "params": model.num_params()}
