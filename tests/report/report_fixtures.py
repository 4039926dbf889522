# SPDX-License-Identifier: MIT
"""Synthetic run directories with the contract's columns, for the report tests
(imported by name; a module called conftest would collide with tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thoughtgrad.report import figures, spectra_figures
from thoughtgrad.runs.store import RunDir

ROLES = ("q", "k", "v", "o", "gate", "up", "down")
XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
HOSTILE = f"{XSS} Tom has 3 apples and buys 4 more. How many apples does he have?"
"""A record's instruction that must reach the report as inert, escaped text."""


def make_spectra(kind: str, *, n_samples: int = 8, n_layers: int = 6, seed: int = 0,
                 roles: tuple[str, ...] = ROLES, controls: bool = False) -> pd.DataFrame:
    """Realistic-looking spectra rows: none has large, wiggly curves; detailed small and flat;
    irrelevant responses get larger gradients with detailed CoT only."""
    rng = np.random.default_rng(seed + (0 if kind == "correct" else 1000))
    rows = []
    settings = [("mean", "response", "random")]
    if controls:
        settings += [("sum", "response", "random"), ("mean", "answer", "random")]
    for red, span, init in settings:
        for level, scale, wiggle in (("none", 8.0, 3.0), ("simplified", 5.0, 1.5),
                                     ("detailed", 2.0, 0.3)):
            boost = 1.6 if (kind == "irrelevant" and level == "detailed") else 1.0
            if red == "sum":
                scale *= {"none": 3.0, "simplified": 20.0, "detailed": 80.0}[level]
            source = "gsm8k" + {"none": "_no_cot", "simplified": "_with_cot",
                                "detailed": "_with_cot_gpt4o"}[level]
            if kind == "irrelevant":
                source = "cot_500_wrong_answer_shuffle/" + source
            for s in range(n_samples):
                loss = float(rng.uniform(1.0, 3.0))
                for layer in range(n_layers):
                    for r, role in enumerate(roles):
                        base = scale * boost * (1 + 0.1 * r) + wiggle * (-1) ** layer
                        nuc = abs(base + rng.normal(0, 0.3 * scale))
                        smax = nuc * rng.uniform(0.2, 0.6)
                        rows.append({
                            "sample_id": s, "source": source, "cot_level": level,
                            "response_kind": kind, "condition": f"{level}/{kind}",
                            "layer": layer, "role": role,
                            "param": f"model.layers.{layer}.{role}.weight",
                            "nuclear": nuc, "sigma_max": smax, "sigma_min": 0.0,
                            "ratio": smax / nuc, "frobenius": nuc * 0.7,
                            "effective_rank": float(rng.uniform(2, 10)), "rank": 12,
                            "n_tokens": 30, "loss": loss, "loss_reduction": red,
                            "loss_span": span, "init": init, "model": "tiny-llama"})
    return pd.DataFrame(rows)


def real_spectra_run(root: Path) -> Path:
    """A real run: a record file whose first instruction is :data:`HOSTILE` (and its
    bare-answer sibling), measured by ``thoughtgrad spectra`` on a tiny random-init llama
    with a locally built tokenizer."""
    import json

    from thoughtgrad.cli import main
    from thoughtgrad.models.tiny import build_tokenizer, save_tiny

    questions = [HOSTILE] + [f"Ann has {i} pens and buys {i + 2} more. How many pens?"
                             for i in range(3)]
    answers = [7] + [2 * i + 2 for i in range(3)]
    cot = [f"She adds them: {q.split(' has ')[1].split(' ')[0]} + ... = {a}.\n"
           f"The final answer is {a}" for q, a in zip(questions, answers, strict=True)]
    data = root / "records" / "cot_500"
    data.mkdir(parents=True)
    files = []
    for stem, outputs in (("apples_no_cot", [str(a) for a in answers]),
                          ("apples_with_cot", cot)):
        f = data / f"{stem}.json"
        f.write_text(json.dumps([{"instruction": q, "input": "", "output": o}
                                 for q, o in zip(questions, outputs, strict=True)]))
        files.append(f)
    model = save_tiny(root / "tiny-llama", "llama", build_tokenizer(questions + cot),
                      seed=0)
    out = root / "real"
    argv = ["spectra", "--model", str(model), "--out", str(out), "--device", "cpu"]
    for f in files:
        argv += ["--data", str(f)]
    assert main(argv) == 0
    return out


def make_run(root: Path, name: str, tables: dict[str, pd.DataFrame], **manifest) -> Path:
    run = RunDir.create(root / name, command="thoughtgrad spectra", seed=0,
                        model="tiny-llama", **manifest)
    for table, df in tables.items():
        run.write(table, df)
    run.set_status("completed")
    return run.path


def make_toy_tables(seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    rows = []
    for regime in ("direct", "cot"):
        for k in range(2, 9):
            p = 0.98 if regime == "cot" else max(0.05, 1.0 - 0.15 * (k - 1))
            for i in range(20):
                ok = bool(rng.random() < p)
                kind = "" if ok else ("arithmetic" if regime == "direct" or i % 2 else
                                      "format_unclosed")
                rows.append({"task": "addition", "regime": regime, "k": k, "problem": f"<{i}>",
                             "target": 10, "prediction": "10#", "answer": 10, "correct": ok,
                             "error_kind": kind or None, "train_size": 3000,
                             "split": "eval" if k <= 6 else "ood"})
    acc = pd.DataFrame(rows)
    dyn = []
    for regime, lam in (("half", 40.0), ("cot", 12.0)):
        for step in range(50):
            dyn.append({"regime": regime, "step": step, "loss": 3.0 * np.exp(-step / 20),
                        "grad_norm": 1.0 + rng.random() + (5.0 if step == 17 else 0.0),
                        "spike": step == 17, "cos_prev": rng.uniform(0, 1),
                        "lambda_max": lam + step if step % 10 == 0 else np.nan,
                        "lambda_iters": 20 if step % 10 == 0 else np.nan,
                        "dist_init": 0.1 * step})
    sur = []
    for cond in ("half", "cot"):
        for pos in range(12):
            p = float(rng.uniform(0.05, 0.99))
            g = float((1 - p) * rng.uniform(1.0, 1.41))
            sur.append({"sample_id": "s0", "condition": cond, "position": pos, "token_id": 3,
                        "surprisal_bits": -np.log2(p), "p_true": p, "logit_grad_norm": g,
                        "lemma2_lower": 1 - p, "lemma2_upper": np.sqrt(2) * (1 - p),
                        "lemma2_ok": True})
    scale = knob_rows(rng)
    return {"accuracy": acc, "dynamics": pd.DataFrame(dyn), "surprisal": pd.DataFrame(sur),
            "scale": scale}


def knob_rows(rng: np.random.Generator) -> pd.DataFrame:
    """A ``toy knobs`` scale table: parameters (direct models of L = 1, 2, 4 layers), tokens
    (a CoT model), samples (majority vote at n for a direct and a CoT model) and loops (a
    looped model at r), for K = 2..8 (7 and 8 out of distribution)."""
    rows = []
    flops_per_token = {1: 7e3, 2: 1.4e4, 4: 2.8e4}

    def add(model, regime, n_layer, knob, k, n, acc, tokens, loops=1):
        rows.append({"task": "addition", "model": model, "regime": regime, "n_layer": n_layer,
                     "n_loops_train": loops, "params": 3000 * n_layer + 3000, "k": k,
                     "knob": knob, "n": n, "accuracy": float(np.clip(acc, 0, 1)),
                     "pass_at_n": float(np.clip(acc + 0.1, 0, 1)), "compute_tokens": tokens,
                     "compute_flops": tokens * flops_per_token.get(n_layer, 7e3) * loops,
                     "n_problems": 20, "temperature": 0.8 if knob == "samples" else 0.0,
                     "split": "in_distribution" if k <= 6 else "out_of_distribution"})

    for k in range(2, 9):
        hard = (k - 1) / 7
        for n_layer in (1, 2, 4):
            add(f"direct-L{n_layer}", "direct", n_layer, "parameters", k, n_layer,
                1 - hard / (0.5 * n_layer + 0.6) + rng.normal(0, 0.02), 2 * k + 6)
        add("cot-L1", "cot", 1, "tokens", k, 1, 0.95 - 0.3 * (k > 6), 8 * k + 6)
        for model, regime, base, per in (("direct-L1", "direct", 1 - hard / 1.1, 2 * k + 6),
                                         ("cot-L1", "cot", 0.9 - 0.3 * (k > 6), 8 * k + 6)):
            for n in (1, 2, 4, 8):
                add(model, regime, 1, "samples", k, n, base + 0.03 * np.log2(n), per * n)
        for r in (1, 2, 3, 4):
            add("looped-L1-r2", "direct", 1, "loops", k, r, 1 - hard / (0.4 * r + 0.7),
                2 * k + 6, loops=r)
    return pd.DataFrame(rows)


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    """A correct and an irrelevant spectra run (all three CoT levels)."""
    return [make_run(tmp_path, "correct", {"spectra": make_spectra("correct")},
                     data="cot_500/gsm8k_no_cot.json"),
            make_run(tmp_path, "irrelevant", {"spectra": make_spectra("irrelevant")},
                     data="cot_500_wrong_answer_shuffle/gsm8k_no_cot.json")]


@pytest.fixture
def saved(monkeypatch):
    """The matplotlib figures the renderers save, kept open for inspection."""
    figs = []

    def keep(fig, out_dir, name):
        fig.canvas.draw()
        figs.append(fig)
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / f"{name}.png"
        fig.savefig(png, dpi=40)
        return png

    for module in (figures, spectra_figures):  # each draws through its own ``save``
        monkeypatch.setattr(module, "save", keep)
    yield figs
    import matplotlib.pyplot as plt

    plt.close("all")


def layout_ok(fig) -> None:
    """Legend below every panel and the title above them: no overlap."""
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    bottom = min(ax.get_window_extent(renderer).y0 for ax in axes)
    top = max(ax.get_tightbbox(renderer).y1 for ax in axes)
    for legend in fig.legends:
        assert legend.get_window_extent(renderer).y1 <= bottom + 1
    if fig._suptitle is not None:
        assert fig._suptitle.get_window_extent(renderer).y0 >= top - 1
