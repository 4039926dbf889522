# SPDX-License-Identifier: MIT
"""Step-by-step records for the step, corruption and variant tests: hand-written gsm8k-style
rows, the shared real data when present, and an independent equation checker (imported by
name, like tests/report/report_fixtures.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "layer_gradient"
GSM8K = SHARED / "cot_500" / "gsm8k_train_with_cot.json"
GSM8K_GPT4O = SHARED / "cot_500" / "gsm8k_train_with_cot_gpt4o.json"
GSM8K_NONE = SHARED / "cot_500" / "gsm8k_train_no_cot.json"
needs_shared = pytest.mark.skipif(not GSM8K_GPT4O.is_file(),
                                  reason=f"shared data absent: {GSM8K_GPT4O}")

PETE_Q = ("Pete must pay $90. He finds two $20 bills and four $10 bills. If the store pays "
          "50 cents for each bottle, how many bottles will Pete have to return?")
PETE_A = ("Pete's wallet contains 2 * 20 = 40 dollars. The money in his pockets is 4 * 10 = 40 "
          "dollars. In total Pete has 40 + 40 = 80 dollars. He needs 90 - 80 = 10 more dollars. "
          "The number of bottles is 10 / (1 / 2) = 10 * 2 = 20 bottles.\nThe final answer is 20")
ROWS = [
    {"instruction": PETE_Q, "input": "", "output": PETE_A},
    {"instruction": "Sam has 3 apples and buys 5. How many?", "input": "",
     "output": "He has 3 + 5 = 8 apples.\nThe final answer is 8"},
    {"instruction": "A shirt costs $12. Three shirts?", "input": "",
     "output": "Step 1: the price is 12.\nStep 2: 3 * 12 = 36.\nStep 3: check 36 / 3 = 12.\n"
               "The final answer is 36"},
]

_NUM = r"\d+(?:\.\d+)?"
_EXPR = rf"{_NUM}(?: [-+*/] (?:\({_NUM} / {_NUM}\)|{_NUM}))+"
SIMPLE_EQ = re.compile(rf"(?<![\d.])({_EXPR}(?: = {_EXPR})*) = ({_NUM})(?![\d]| [-+*/] )")


def checked(text: str) -> list[tuple[str, bool]]:
    """Every plain ``a op b ... [= c op d ...] = r`` of ``text`` and whether its arithmetic
    holds to the shown rounding of ``r``: an oracle independent of the module's
    LaTeX-aware parser."""
    out = []
    for m in SIMPLE_EQ.finditer(text):
        shown = m.group(2)
        tol = 0.5 * 10 ** -(len(shown.split(".")[1]) if "." in shown else 0) + 1e-9
        ok = all(abs(eval(e) - float(shown)) <= tol  # noqa: S307 - digits and + - * / only
                 for e in m.group(1).split(" = "))
        out.append((m.group(0), ok))
    return out
