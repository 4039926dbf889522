# SPDX-License-Identifier: MIT
"""A tiny random-init llama and two small record files for the spectra-run tests (imported
by name, like tests/report/report_fixtures.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QUESTIONS = [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have?"
             for i in range(6)]
COT = [f"He starts with {i}. He buys {i + 3}. {i} + {i + 3} = {2 * i + 3}.\n"
       f"The final answer is {2 * i + 3}" for i in range(6)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from thoughtgrad.models.tiny import build_tokenizer, save_tiny

    d = tmp_path_factory.mktemp("llama")
    tok = build_tokenizer(QUESTIONS + COT, vocab_size=300)
    return save_tiny(d, "llama", tok, seed=1)


@pytest.fixture()
def data(tmp_path) -> list[Path]:
    d = tmp_path / "cot_500"
    d.mkdir()
    no_cot = d / "apples_no_cot.json"
    cot = d / "apples_with_cot.json"
    no_cot.write_text(json.dumps([{"instruction": q, "input": "", "output": str(2 * i + 3)}
                                  for i, q in enumerate(QUESTIONS)]))
    cot.write_text(json.dumps([{"instruction": q, "input": "", "output": c}
                               for q, c in zip(QUESTIONS, COT, strict=True)]))
    return [no_cot, cot]
