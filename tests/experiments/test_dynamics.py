# SPDX-License-Identifier: MIT
"""`experiments/dynamics.py`: the batched surprisal measurement against a batch-of-one hand
`log_softmax` gather."""

from __future__ import annotations

import math
import random

import pytest
import torch

from thoughtgrad.experiments.dynamics import Example, measure_surprisal
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
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
            logp = torch.log_softmax(model(ids)[0].double(), dim=-1)  # T V
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
