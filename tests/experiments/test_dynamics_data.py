# SPDX-License-Identifier: MIT
"""The dynamics study's responses per regime: the prompt's answer shape locates the final
answer, as the variant builders do."""

from __future__ import annotations

import random

from thoughtgrad.experiments.dynamics_data import regime_response
from thoughtgrad.tasks.variants import half_steps_response, none_response

AQUA = ("Two trains start 300 m apart. When do they pass each other?\nOptions:\n(A) 7 1/9\n"
        "(B) 7 1/2\n(C) 8\n(D) 9")
AQUA_OUT = "They close at 40 m/s. 300 / 40 = 7.5 seconds.\nSo the answer is (B) 7 1/2."
PENS = "Tom has 3 boxes of 4 pens and gives away 2. How many pens are left?"
PENS_OUT = ("He has 3 * 4 = 12 pens. He gives away 2, so 12 - 2 = 10 pens remain.\n"
            "So 10 pens, with 3 boxes.")


def test_answer_regime_reads_the_answer_shape_from_the_prompt() -> None:
    assert regime_response(AQUA_OUT, "answer", seed=0, sample_id=0, prompt=AQUA) == "(B)"
    assert regime_response(PENS_OUT, "answer", seed=0, sample_id=0, prompt=PENS) == "10"
    # without the prompt the free-text last line is all there is to go on
    assert regime_response(PENS_OUT, "answer", seed=0, sample_id=0) == PENS_OUT.splitlines()[-1]
    assert regime_response(PENS_OUT, "answer", seed=0, sample_id=0, prompt=PENS) == \
        none_response(PENS_OUT, PENS)


def test_half_regime_is_the_seeded_half_steps_variant_with_the_prompt() -> None:
    for i in range(4):
        got = regime_response(PENS_OUT, "half", seed=1, sample_id=i, prompt=PENS)
        assert got == half_steps_response(PENS_OUT, random.Random(f"half_steps:1:{i}"), PENS)
    assert regime_response(PENS_OUT, "cot", seed=1, sample_id=0, prompt=PENS) == PENS_OUT


def test_answers_truncated_away_say_which_max_length_fits(tmp_path) -> None:
    """Every answer cut off by max_length: one line naming the lengths the samples need."""
    import json

    import pytest

    from thoughtgrad.errors import UserError
    from thoughtgrad.experiments.dynamics_data import file_examples
    from thoughtgrad.models.tiny import build_tokenizer

    recs = [{"instruction": f"Tom has {a} apples and buys 4. How many?", "input": "",
             "output": " ".join(f"Step {i}: think about apples." for i in range(12))
             + f" The final answer is {a + 4}."} for a in (3, 5)]
    path = tmp_path / "gsm8k_train_with_cot_gpt4o.json"
    path.write_text(json.dumps(recs))
    tok = build_tokenizer([r["instruction"] + "\n" + r["output"] for r in recs],
                          vocab_size=300)
    with pytest.raises(UserError, match=r"removed every loss-carrying.*raise --max-length "
                                        r"to at least \d+"):
        file_examples(path, tok, "cot", seed=0, max_length=24)
    assert len(file_examples(path, tok, "cot", seed=0, max_length=None)[0]) == 2


def test_every_regime_keeps_the_samples_whose_full_response_fits(tmp_path) -> None:
    """A long reasoning that cot loses to max_length is left out of half and answer too, so
    the regimes train on the same sample ids (before: half kept it and drew other problems
    at each step)."""
    import json

    from thoughtgrad.experiments.dynamics_data import file_examples
    from thoughtgrad.models.tiny import build_tokenizer

    def rec(a: int, steps: int) -> dict[str, str]:
        body = " ".join(f"Step {i}: {a} plus {i} is {a + i}." for i in range(steps))
        return {"instruction": f"Tom has {a} apples and buys 4. How many?", "input": "",
                "output": f"{body}\nThe final answer is {a + 4}."}

    recs = [rec(3, 2), rec(5, 30), rec(7, 3)]  # the middle one is far too long
    path = tmp_path / "gsm8k_train_with_cot_gpt4o.json"
    path.write_text(json.dumps(recs))
    tok = build_tokenizer([r["instruction"] + "\n" + r["output"] for r in recs],
                          vocab_size=300)
    full_len = [len(file_examples(path, tok, "cot", seed=0, max_length=None)[0][i].full)
                for i in range(3)]
    bound = max(full_len[0], full_len[2])
    assert full_len[1] > bound
    kept = {}
    for regime in ("cot", "half", "answer"):
        examples, failed = file_examples(path, tok, regime, seed=0, max_length=bound)
        kept[regime] = [e.sample_id for e in examples]
        assert [f["sample_id"] for f in failed] == [1], regime
    # the answer regime alone would have fitted it
    assert len(file_examples(path, tok, "answer", seed=0, max_length=None)[0][1].full) <= bound
    assert kept["cot"] == kept["half"] == kept["answer"] == [0, 2]
