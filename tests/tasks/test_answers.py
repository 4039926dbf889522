# SPDX-License-Identifier: MIT
"""Answer spans: the default markers, a custom pattern, the prompt's answer shape, a
reference answer, and the real data against the datasets' own bare answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from thoughtgrad.tasks.answers import _same, answer_span
from thoughtgrad.tasks.encode import EncodeConfig, encode


@pytest.mark.parametrize(("text", "answer"), [
    ("48/2 = 24. 48+24 = 72.\nThe final answer is 72", "72"),
    ("so the bill is \\( \\boxed{102.00} \\).", "102.00"),
    ("Speed is 5 m/s. So the answer is (B).", "(B)"),
    ("Work:\n1 + 1 = 2\n\n**Final Answer:**\n(D) 7 1/2", "(D) 7 1/2"),
    ("### Answer:\n(A) 56 sec", "(A) 56 sec"),
    ("Answer: C", "C"),
    ("20", "20"),
    ("Many words here.\n\nTherefore, Pete needs 20 bottles.\n",
     "Therefore, Pete needs 20 bottles."),
    ("The final answer is 3\nThe final answer is 5", "5"),
])
def test_answer_span_default_patterns(text, answer):
    a, b = answer_span(text)
    assert text[a:b] == answer


def test_answer_span_custom_pattern():
    text = "steps... #### 42 done"
    a, b = answer_span(text, r"#### (\d+)")
    assert text[a:b] == "42"
    assert answer_span(text, r"ANSWER=(\d+)") is None


AQUA_Q = "Two trains ... pass each other?\\nOptions:\\n(A) 7 1/9\\n(B) 7 1/2\\n(C) 8\\n(D) 9"
ECQA_Q = ("Knitting for a long time leads to?\\nOptions:\\n- bleeding\\n"
          "- carpal tunnel syndrome\\n- rest")
SENSE_Q = ('Which sentence does not make sense?\\nOptions:\\n- Sentence A: "Cats fly."\\n'
           '- Sentence B: "Cats walk."')
CREAK_Q = 'Claim: "Ice is cold."\\nIs the claim above correct?\\nOptions:\\n- yes\\n- no'


@pytest.mark.parametrize(("prompt", "text", "answer"), [
    # gsm8k: the marked number, then the first new number of the last line, not a given one
    ("Pete has $90 and 2 bills. How many bottles?",
     "Steps...\n\nTherefore, after 2 days Pete needs to return 20 bottles for $90.", "20"),
    ("Tim drinks 2 cups. How much?", "#### Step 1.2: add\n2 * 3 = 6\n#### 6", "6"),
    ("Bill pays $85. Total?", "Thus his total bill is \\( \\boxed{102.00} \\).", "102.00"),
    # multiple choice: the option letter, in LaTeX or after "Answer"
    (AQUA_Q, "Work.\n\n**Final Answer:**\n(B) 7 1/2", "(B)"),
    (AQUA_Q, "So the answer is \\((\\text{C}) 8\\)", "(\\text{C})"),
    (AQUA_Q, "Thus the time is \\boxed{9} seconds.", "9"),  # no letter: the option's value
    # option texts, bold phrases for another question's answer, Sentence A/B, yes/no
    (ECQA_Q, "Both fit.\nThe most accurate answer is:\n- **Carpal Tunnel Syndrome**",
     "Carpal Tunnel Syndrome"),
    (ECQA_Q, "Thus the best choice is **staggering**.", "staggering"),  # another question's
    (SENSE_Q, "**Final Answer:**\nSentence A (\"Cats fly\") does not make sense.", "Sentence A"),
    (CREAK_Q, "Ice is frozen water.\n\nTherefore, the answer is \"Yes.\"", "Yes"),
    ("Did polar bears live in Greece?", "Greece is warm. So no, they did not.", "no"),
    ("If you add water to rice pudding, is it horchata?", "It is not. No.", "No"),
])
def test_answer_span_by_the_prompts_answer_shape(prompt, text, answer):
    a, b = answer_span(text, prompt=prompt)
    assert text[a:b] == answer


def test_answer_span_none_when_the_response_never_states_the_answer():
    text = "Polar bears live in the Arctic; Greece is far too warm for them."
    assert answer_span(text, prompt="Did polar bears live in Greece?") is None
    assert answer_span(text) is not None  # free text: the last line, as before


def test_answer_span_finds_the_reference_answer_last():
    text = "We have 20 dollars and need 102.00 in total.\nSo she pays $102.00, not 20."
    a, b = answer_span(text, prompt="She has $20. How much?", reference="102")
    assert (text[a:b], a) == ("102.00", text.rindex("102.00"))  # numbers by value
    text = "(D) looks close, but x = 46, which is option (D)."
    a, b = answer_span(text, prompt=AQUA_Q, reference="(D)")
    assert (text[a:b], a) == ("(D)", text.rindex("(D)"))
    a, b = answer_span("The result is 8 seconds.", prompt=AQUA_Q, reference="(C)")
    assert "The result is 8 seconds."[a:b] == "8"  # the value of option (C)


SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "layer_gradient"
DATASETS = ("gsm8k", "aqua", "strategyqa", "ecqa", "creak", "sensemaking")


@pytest.mark.skipif(not (SHARED / "cot_500").is_dir(), reason=f"shared data absent: {SHARED}")
@pytest.mark.parametrize("dataset", DATASETS)
def test_answer_span_on_the_real_data_is_the_answer_itself(dataset, tiny_tokenizer):
    """Oracle: the dataset's own bare answers (the _no_cot file). Detailed (GPT-4o)
    responses, with and without that reference, mark about as many tokens as the bare
    answer, and the marked text states it."""
    import json

    def rows(suffix):
        return json.loads((SHARED / "cot_500" / f"{dataset}_train_{suffix}.json").read_text())[:80]

    bare = rows("no_cot")
    cfg = EncodeConfig(loss_span="answer")
    n_bare = [encode(tiny_tokenizer, r["instruction"], r["output"], cfg).n_loss_tokens
              for r in bare]
    for ref in (False, True):
        n, agree, never = [], 0, 0
        for r, b in zip(rows("with_cot_gpt4o"), bare, strict=True):
            reference = b["output"] if ref else None
            span = answer_span(r["output"], prompt=r["instruction"], reference=reference)
            if span is None:
                never += 1
                continue
            n.append(encode(tiny_tokenizer, r["instruction"], r["output"], cfg,
                            reference=reference).n_loss_tokens)
            agree += _same(r["output"][span[0]:span[1]], b["output"], r["instruction"])
        assert sum(n) / len(n) <= 1.5 * sum(n_bare) / len(n_bare) + 1.5, (dataset, ref)
        assert max(n) <= max(n_bare) + 12
        assert agree >= (0.7 if dataset != "strategyqa" else 0.3) * len(bare), (dataset, ref)
        assert never <= (0.65 if dataset == "strategyqa" else 0.15) * len(bare)
    simplified = rows("with_cot")
    got = [answer_span(r["output"], prompt=r["instruction"]) for r in simplified]
    assert all(_same(r["output"][a:b], x["output"], r["instruction"])
               for r, (a, b), x in zip(simplified, got, bare, strict=True))
