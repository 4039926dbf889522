# SPDX-License-Identifier: MIT
"""`experiments/dynamics.py`: the batched surprisal measurement against a batch-of-one hand
`log_softmax` gather; the exported fine-tuned toy model keeps its base's split."""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path

import pytest
import torch

from thoughtgrad.experiments.dynamics import (
    TOY_SPLIT_KEYS,
    TOY_TRAIN,
    DynamicsConfig,
    ProbeConfig,
    measure_surprisal,
    run_dynamics,
)
from thoughtgrad.experiments.dynamics_data import Example, toy_examples
from thoughtgrad.experiments.toy import config_from_checkpoint
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig, read_checkpoint_meta
from thoughtgrad.runs.store import RunDir
from thoughtgrad.tasks.encode import Encoded
from thoughtgrad.tasks.toy import TOKENIZER, encode_example, get_task, response


def _examples(n: int) -> list[Example]:
    task = get_task("addition")
    problems = [task.draw(random.Random(i), 2 + i % 3) for i in range(n)]
    out = []
    for i, p in enumerate(problems):
        ids, labels = encode_example(p.prompt(), response(task, p, "cot", seed=0))
        enc = Encoded(ids, labels, len(p.prompt()), False)
        out.append(Example(10 + i, enc, enc))
    return out


def test_measure_surprisal_equals_batch_of_one_gather() -> None:
    torch.manual_seed(0)
    model = GPTMini(GPTMiniConfig(vocab_size=TOKENIZER.vocab_size, block_size=128, n_layer=2,
                                  n_head=2, d_model=16, seed=3)).eval()
    examples = _examples(5)
    tokens, samples = measure_surprisal(model, examples, pad_id=TOKENIZER.pad_id,
                                        condition="cot", device="cpu", batch_size=2, tau=0.5)
    assert set(tokens["condition"]) == {"cot"} and list(samples["tau"].unique()) == [0.5]
    for e in examples:
        ids = torch.tensor([e.full.input_ids])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)  # T V
        want = [(t, -float(logp[t - 1, y]) / math.log(2)) for t, y in
                enumerate(e.full.labels) if y != -100 and t >= 1]
        got = tokens[tokens["sample_id"] == e.sample_id]
        assert list(got["position"]) == [t for t, _ in want], e.sample_id
        assert got["surprisal_bits"].to_numpy() == pytest.approx([b for _, b in want],
                                                                  rel=1e-4, abs=1e-5)
        row = samples[samples["sample_id"] == e.sample_id].iloc[0]
        assert row["n_tokens"] == len(want)
        assert row["total_surprisal_bits"] == pytest.approx(sum(b for _, b in want), rel=1e-4)
        assert row["lemma2_violations"] == 0 and row["threshold_violations"] == 0


def test_exported_toy_model_keeps_the_base_split(tmp_path: Path) -> None:
    """model-<regime> carries the base checkpoint's task and split, so `toy:<task>` data
    read from it gives the same held-out problems as the base (not the defaults')."""
    base = tmp_path / "base"
    split = {"task": "addition", "regime": "cot", "style": "cot", "train_size": 120,
             "train_ks": [2, 3], "eval_ks": [2, 3, 4], "eval_per_k": 15, "split_seed": 7}
    GPTMini(GPTMiniConfig(vocab_size=TOKENIZER.vocab_size, d_model=16, n_layer=1, n_head=2,
                          block_size=64, mlp_ratio=2)).save(base, extra=split)
    train = dataclasses.replace(TOY_TRAIN, steps=2, batch_size=4, checkpoint_every=2,
                                warmup_steps=1)
    cfg = DynamicsConfig(model=str(base), data="toy:addition", regime="half", train=train,
                         probes=ProbeConfig(curvature_every=100, curvature_max_iter=2,
                                            probe_batch_size=2), device="cpu", limit=8)
    run = RunDir.create(tmp_path / "run", command="train", config=cfg)
    result, _ = run_dynamics(cfg, run)
    assert result.stopped_reason is None
    exported = tmp_path / "run" / "model-half"
    meta = read_checkpoint_meta(exported)
    assert {k: meta[k] for k in TOY_SPLIT_KEYS} == {k: split[k] for k in TOY_SPLIT_KEYS}
    assert (meta["regime"], meta["style"], meta["dynamics_regime"]) == ("half", "half",
                                                                         "half")
    assert config_from_checkpoint(exported)[0] == config_from_checkpoint(base)[0]
    got = toy_examples(exported, "addition", "cot", seed=0)
    want = toy_examples(base, "addition", "cot", seed=0)
    assert [e.full.input_ids for e in got] == [e.full.input_ids for e in want]
    default = toy_examples(tmp_path / "nowhere", "addition", "cot", seed=0)
    assert len(default) != len(want)  # the defaults' split is another one
