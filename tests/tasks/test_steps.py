# SPDX-License-Identifier: MIT
"""Step splitting: sentences, lines and the answer line of plain responses, and the markdown
steps of a real GPT-4o response."""

from __future__ import annotations

import json

from variant_fixtures import GSM8K_GPT4O, PETE_A, ROWS, needs_shared

from thoughtgrad.tasks.steps import split_steps
from thoughtgrad.tasks.variants import build_variant


def test_split_steps_sentences_lines_and_answer():
    s = split_steps(PETE_A)
    assert s.answer == "20" and s.answer_line == "The final answer is 20"
    assert len(s.steps) == 5 and s.steps[0].startswith("Pete's wallet") and s.sep == " "
    lines = split_steps(ROWS[2]["output"])
    assert lines.steps == ["Step 1: the price is 12.", "Step 2: 3 * 12 = 36.",
                           "Step 3: check 36 / 3 = 12."] and lines.answer == "36"
    bare = split_steps("42")
    assert bare.steps == [] and bare.answer == "42"


@needs_shared
def test_markdown_steps_of_a_real_gpt4o_response():
    rows = json.loads(GSM8K_GPT4O.read_text())
    pete = rows[0]
    s = split_steps(pete["output"], pete["instruction"])
    assert s.preamble.startswith("To determine the number of bottles")
    assert [st.split("\n", 1)[0] for st in s.steps] == [
        "1. **Calculate the total amount of money Pete currently has.**",
        "2. **Determine the remaining amount Pete needs to pay off.**",
        "3. **Calculate the equivalent number of bottles needed to make up the remaining $10.**"]
    assert "40 + 40 = 80" in s.steps[0] and "\\frac{1000" in s.steps[2]  # equations kept
    assert s.answer == "20" and s.answer_line.startswith("Therefore, Pete needs to return 20")
    simp = build_variant([pete], "simplified").rows[0]["output"]
    assert "1. **Calculate" in simp and "3. **Calculate" in simp and "2. **Determine" not in simp
    assert "40 + 40 = 80" in simp and "= 20 \\text{ bottles}" in simp  # bodies, not headers
    assert simp.endswith(s.answer_line)
