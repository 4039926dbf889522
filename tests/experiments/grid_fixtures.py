# SPDX-License-Identifier: MIT
"""A tiny data root laid out like ../shared/data/layer_gradient (3 records per file: gsm8k,
aqua and wiki_popularity) for the grid tests (imported by name, like spectra_fixtures)."""

from __future__ import annotations

import json
from pathlib import Path

from thoughtgrad.experiments.grid import (
    COT_SUFFIXES,
    REASONING_FOLDERS,
    WIKI_FOLDERS,
    WIKI_STEMS,
)

N_RECORDS = 3


def _responses(dataset: str, suffix: str, i: int) -> str:
    answer = str(2 * i + 3) if dataset == "gsm8k" else "ABC"[i % 3]
    if suffix == "_no_cot":
        return answer
    steps = f"{i} + {i + 3} = {2 * i + 3}." if dataset == "gsm8k" else f"Option {answer} fits."
    if suffix == "_with_cot":
        return f"{steps}\nThe final answer is {answer}"
    return f"Let us think step by step. First, {steps} Then we check it.\n" \
           f"The final answer is {answer}"


def write_data_root(root: Path, *, datasets: tuple[str, ...] = ("aqua", "gsm8k")) -> Path:
    """Files of ``datasets`` and wiki_popularity, correct and shuffled (irrelevant)."""
    for dataset in datasets:
        question = ("Tom has {i} apples and buys {j} more. How many apples?" if dataset ==
                    "gsm8k" else "Which option is letter number {i}? A) one B) two C) three")
        for folder in REASONING_FOLDERS:
            (root / folder).mkdir(parents=True, exist_ok=True)
            for suffix in COT_SUFFIXES:
                recs = [{"instruction": question.format(i=i, j=i + 3), "input": "",
                         "output": _responses(dataset, suffix, i)} for i in range(N_RECORDS)]
                if "shuffle" in folder:  # another instruction's response
                    outs = [r["output"] for r in recs]
                    recs = [{**r, "output": outs[(k + 1) % len(outs)]}
                            for k, r in enumerate(recs)]
                path = root / folder / f"{dataset}_train{suffix}.json"
                path.write_text(json.dumps(recs))
    for folder in WIKI_FOLDERS:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for stem in WIKI_STEMS:
            words = 4 if stem.endswith("100") else 8 if stem.endswith("500") else 12
            recs = [{"instruction": f"Tell me about topic {i}.", "input": "",
                     "output": " ".join(f"Topic {i} fact {w}." for w in range(words))}
                    for i in range(N_RECORDS)]
            if "shuffle" in folder:
                outs = [r["output"] for r in recs]
                recs = [{**r, "output": outs[(k + 1) % len(outs)]} for k, r in enumerate(recs)]
            (root / folder / f"{stem}.json").write_text(json.dumps(recs))
    return root
