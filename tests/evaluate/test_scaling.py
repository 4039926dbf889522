# SPDX-License-Identifier: MIT
"""The scale study: majority@n and pass@n rows against hand counts and an independent
recomputation; greedy and loop rows against the accuracy module's own decoding."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.evaluate.accuracy import evaluate_accuracy
from thoughtgrad.evaluate.sampling import SampleSet, sample_responses
from thoughtgrad.evaluate.scaling import (
    SCALE_COLUMNS,
    SampleConfig,
    greedy_row,
    greedy_study,
    loop_study,
    sample_study,
    vote_rows,
)
from thoughtgrad.experiments.toy import ToyConfig, split_for, train_regime
from thoughtgrad.models.gpt_mini import GPTMiniConfig
from thoughtgrad.tasks.toy import get_task
from thoughtgrad.train.sft import TrainConfig


def hand_set(answers, positions):
    pos = np.array(positions)
    return SampleSet(texts=[[""] * len(a) for a in answers], answers=answers, positions=pos,
                     flops=pos * 10.0)


def test_vote_rows_on_hand_made_answers():
    answers = [[1, 2, 2, None], [3, 3, 1, 1], [None, None, None, 5]]
    targets = [2, 1, 5]
    s = hand_set(answers, [[4, 5, 6, 7], [4, 4, 4, 4], [9, 9, 9, 9]])
    rows = {r["n"]: r for r in vote_rows(3, s, targets, [4, 1, 2])}
    assert sorted(rows) == [1, 2, 4]
    # n=1: votes 1, 3, None -> all wrong; n=2: [1,2] tie -> 1, [3,3] -> 3, [None, None]
    # -> None: all wrong; n=4: 2 right, tie 3-1 -> 3 wrong, 5 right.
    assert [rows[n]["accuracy"] for n in (1, 2, 4)] == pytest.approx([0, 0, 2 / 3])
    # pass@1 = c/N per problem: 2/4, 2/4, 1/4
    assert rows[1]["pass_at_n"] == pytest.approx((0.5 + 0.5 + 0.25) / 3)
    # pass@2 by enumeration of the 6 pairs: 1 - C(2,2)/C(4,2) = 5/6; 5/6; 1 - C(3,2)/6 = 1/2
    assert rows[2]["pass_at_n"] == pytest.approx((5 / 6 + 5 / 6 + 1 / 2) / 3)
    assert rows[4]["pass_at_n"] == pytest.approx(1.0)
    assert rows[2]["compute_tokens"] == pytest.approx((9 + 8 + 18) / 3)
    assert rows[4]["compute_flops"] == pytest.approx(10 * (22 + 16 + 36) / 3)
    assert all(r["knob"] == "samples" and r["k"] == 3 and r["n_problems"] == 3
               for r in rows.values())
    with pytest.raises(ValueError, match="exceeds"):
        vote_rows(3, s, targets, [8])


def test_greedy_row_counts_first_sample():
    s = hand_set([[4], [None], [7]], [[5], [6], [7]])
    row = greedy_row(2, s, [4, 1, 7], knob="parameters", n=8)
    assert row["accuracy"] == row["pass_at_n"] == pytest.approx(2 / 3)
    assert (row["knob"], row["n"], row["compute_tokens"]) == ("parameters", 8, 6.0)


@pytest.mark.parametrize("kw,match", [
    ({"samples": (1, 0)}, "samples must be >= 1"),
    ({"samples": ()}, "at least one"),
    ({"temperature": -1.0}, "temperature must be >= 0"),
    ({"temperature": 0.0}, "greedy"),
])
def test_sample_config_rejects_bad_input(kw, match):
    with pytest.raises(UserError, match=match):
        SampleConfig(**kw)


@pytest.fixture(scope="module")
def trained():
    """A 1-block gpt_mini trained briefly on K = 2, 3 direct addition: right on some
    problems, wrong on others, so votes and pass@n are not all 0 or 1."""
    cfg = ToyConfig(train_size=200, train_ks=(2, 3), eval_ks=(2, 3), eval_per_k=10,
                    device="cpu", model=GPTMiniConfig(vocab_size=21, block_size=40, n_layer=1,
                                                      n_head=2, d_model=32),
                    train=TrainConfig(steps=60, batch_size=32, lr=3e-3, warmup_steps=10))
    split = split_for(cfg)
    with tempfile.TemporaryDirectory() as d:
        model, _ = train_regime(cfg, split, "direct", Path(d) / "ckpt")
    return model.eval(), split


def brute_pass(correct: list[bool], n: int) -> float:
    subsets = list(itertools.combinations(range(len(correct)), n))
    return sum(any(correct[i] for i in s) for s in subsets) / len(subsets)


def scan_majority(answers):
    votes = [a for a in answers if a is not None]
    if not votes:
        return None
    top = max(votes.count(a) for a in votes)
    return next(a for a in votes if votes.count(a) == top)


def test_sample_study_matches_independent_recomputation(trained):
    model, split = trained
    task = get_task("addition")
    cfg = SampleConfig(samples=(1, 2, 4), temperature=1.0, seed=11)
    df = sample_study(model, task, split.eval, "answer", cfg)
    assert list(df.columns) == list(SCALE_COLUMNS)
    assert len(df) == 2 * 3
    seen_mixed = False
    for k, problems in split.eval.items():
        s = sample_responses(model, task, problems, "answer", n_samples=4, temperature=1.0,
                             generator=torch.Generator().manual_seed(11 + k))
        targets = [task.answer(p) for p in problems]
        for n in (1, 2, 4):
            row = df[(df.k == k) & (df.n == n)].iloc[0]
            maj = np.mean([scan_majority(a[:n]) == t for a, t in zip(s.answers, targets,
                                                                       strict=True)])
            pas = np.mean([brute_pass([x == t for x in a], n)
                           for a, t in zip(s.answers, targets, strict=True)])
            assert row.accuracy == pytest.approx(maj) and row.pass_at_n == pytest.approx(pas)
            assert row.pass_at_n >= row.accuracy - 1e-12 or n == 1
            assert row.compute_tokens == pytest.approx(s.positions[:, :n].sum(1).mean())
            seen_mixed |= 0 < row.pass_at_n < 1
    assert seen_mixed, "the fixture model should be partly right"


def test_greedy_and_loop_rows_match_the_accuracy_module(trained):
    model, split = trained
    task = get_task("addition")
    ref = evaluate_accuracy(model, task, split.eval, "answer").groupby("k")["correct"].mean()
    g = greedy_study(model, task, split.eval, "answer").set_index("k")
    np.testing.assert_allclose(g["accuracy"], ref.loc[g.index])
    loops = loop_study(model, task, split.eval, "answer", [1, 3])
    for r in (1, 3):
        want = evaluate_accuracy(model, task, split.eval, "answer", n_loops=r) \
            .groupby("k")["correct"].mean()
        got = loops[loops.n == r].set_index("k")["accuracy"]
        np.testing.assert_allclose(got, want.loc[got.index])
    assert set(loops["knob"]) == {"loops"}
    # more loops cost proportionally more FLOPs per position, same positions
    f1 = loops[loops.n == 1].set_index("k")
    f3 = loops[loops.n == 3].set_index("k")
    assert (f3["compute_flops"] > 2 * f1["compute_flops"]).all()
    with pytest.raises(UserError, match=r"loops \(r\) must be >= 1"):
        loop_study(model, task, split.eval, "answer", [0])
