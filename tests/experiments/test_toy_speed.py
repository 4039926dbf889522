# SPDX-License-Identifier: MIT
"""The toy study's speed settings change no number: regimes trained in worker processes
equal the same regimes trained one after the other in this process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.experiments.toy import (
    PARALLEL_MIN_STEPS,
    ToyConfig,
    parallel_workers,
    run_toy,
    torch_threads,
)
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
from thoughtgrad.runs.store import RunDir
from thoughtgrad.train.sft import TrainConfig

TINY = ToyConfig(train_size=200, train_ks=(2, 3), eval_ks=(2, 3), eval_per_k=10, device="cpu",
                 threads=1, parallel=None,
                 model=GPTMiniConfig(vocab_size=21, d_model=32, n_layer=2, n_head=4),
                 train=TrainConfig(steps=12, batch_size=8, warmup_steps=2, checkpoint_every=5))


def _run(cfg: ToyConfig, path: Path) -> tuple:
    run = RunDir.create(path, command="toy", config=cfg, seed=cfg.seed)
    acc = run_toy(cfg, run)
    timings = run.read("timings").set_index("regime")
    weights = {r: GPTMini.load(path / "checkpoints" / f"addition-n200-{r}").state_dict()
               for r in cfg.regimes}
    return acc, timings, weights


def test_parallel_regimes_equal_sequential(tmp_path: Path) -> None:
    """Both regimes trained at once in spawned workers (1 thread each) give bitwise the
    same final losses, weights and accuracy rows as training them here one by one."""
    seq = _run(dataclasses.replace(TINY, parallel=False), tmp_path / "seq")
    par = _run(dataclasses.replace(TINY, parallel=True), tmp_path / "par")
    assert par[1]["final_loss"].to_dict() == seq[1]["final_loss"].to_dict()
    for regime, state in seq[2].items():
        bad = [n for n, w in state.items() if not torch.equal(par[2][regime][n], w)]
        assert not bad, (regime, bad)
    cols = ["task", "regime", "k", "correct"]
    assert par[0][cols].reset_index(drop=True).equals(seq[0][cols].reset_index(drop=True))


def test_parallel_workers_rule() -> None:
    long = dataclasses.replace(TINY, train=TrainConfig(steps=PARALLEL_MIN_STEPS))
    assert parallel_workers(TINY, 2) == 1  # a short run stays in-process when not asked
    assert parallel_workers(dataclasses.replace(TINY, parallel=False), 2) == 1
    assert parallel_workers(long, 1) == 1  # one regime: nothing to run beside it
    expected = 2 if len(__import__("os").sched_getaffinity(0)) >= 2 else 1
    assert parallel_workers(long, 2) == expected
    assert parallel_workers(dataclasses.replace(long, threads=64), 2) == 1


def test_torch_threads_restores_the_setting() -> None:
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), torch_threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError
    assert torch.get_num_threads() == before
    with pytest.raises(UserError, match="threads"):
        ToyConfig(threads=0)
