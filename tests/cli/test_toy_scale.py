# SPDX-License-Identifier: MIT
"""``thoughtgrad toy scale | loops | knobs``: tables written, one-line errors for bad input."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from thoughtgrad.cli import main
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
from thoughtgrad.tasks.toy import TOKENIZER

META = {"task": "fold", "regime": "cot", "style": "cot", "train_size": 20, "train_ks": [2, 3],
        "eval_ks": [2, 3], "eval_per_k": 3, "split_seed": 0}


@pytest.fixture
def checkpoint(tmp_path):
    torch.set_num_threads(1)
    cfg = GPTMiniConfig(vocab_size=TOKENIZER.vocab_size, block_size=64, n_layer=1, n_head=2,
                        d_model=16, n_loops=2)
    return GPTMini(cfg).save(tmp_path / "ckpt", extra=META)


def test_scale_writes_the_scale_table(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["toy", "scale", "--checkpoint", str(checkpoint), "--samples", "1,2,3",
                 "--temperature", "1.0", "--top-p", "0.9", "--loops", "1,4", "--out", str(out)])
    assert code == 0
    df = pd.read_parquet(out / "scale.parquet")
    for col in ("task", "model", "knob", "k", "n", "accuracy", "pass_at_n", "compute_tokens",
                "compute_flops"):
        assert col in df.columns
    assert set(df["knob"]) == {"greedy", "samples", "loops"}
    assert set(df["model"]) == {"looped-L1-r2"} and set(df["task"]) == {"fold"}
    assert sorted(df[df.knob == "samples"]["n"].unique()) == [1, 2, 3]
    assert len(df) == 2 * (1 + 3 + 2)
    assert "fold, looped-L1-r2" in capsys.readouterr().out


def test_loops_command(checkpoint, tmp_path):
    out = tmp_path / "loops"
    assert main(["toy", "loops", "--checkpoint", str(checkpoint), "--loops", "1,2,5",
                 "--out", str(out)]) == 0
    df = pd.read_parquet(out / "scale.parquet")
    assert sorted(df["n"].unique()) == [1, 2, 5] and set(df["knob"]) == {"loops"}


@pytest.mark.parametrize("argv,match", [
    (["scale", "--samples", "0,2"], "samples must be >= 1"),
    (["scale", "--temperature", "-0.5"], "temperature must be >= 0"),
    (["scale", "--loops", "0"], "loops (r) must be >= 1"),
    (["loops", "--loops", "2,0"], "loops (r) must be >= 1"),
    (["knobs", "--loops", "0"], "loops (r) must be >= 1"),
    (["knobs", "--samples", "0"], "samples must be >= 1"),
])
def test_bad_input_is_one_line_error(checkpoint, tmp_path, capsys, argv, match):
    extra = [] if argv[0] == "knobs" else ["--checkpoint", str(checkpoint)]
    code = main(["toy", *argv, *extra, "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: ") and match in err and "\n" not in err


def test_missing_checkpoint_is_one_line_error(tmp_path, capsys):
    code = main(["toy", "scale", "--checkpoint", str(tmp_path / "nope"), "--out",
                 str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: ") and "\n" not in err


def test_knobs_end_to_end_tiny(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "knobs"
    argv = ["toy", "knobs", "--task", "addition", "--layers", "1", "--cot-layers", "1",
            "--loop-layers", "1", "--loop-train", "2", "--loops", "1,3", "--steps", "2",
            "--d-model", "16", "--heads", "2", "--train-size", "50", "--eval-per-k", "2",
            "--samples", "1,2", "--device", "cpu", "--set", "eval_ks=2,3",
            "--set", "train.warmup_steps=1", "--out", str(out)]
    assert main(argv) == 0
    df = pd.read_parquet(out / "scale.parquet")
    assert set(df["model"]) == {"direct-L1", "cot-L1", "looped-L1-r2"}
    assert set(df["knob"]) == {"parameters", "tokens", "samples", "loops"}
    assert set(df[df.knob == "samples"]["model"]) == {"direct-L1", "cot-L1"}
    assert sorted(df["k"].unique()) == [2, 3]
    assert main(argv) == 0  # resumes: every cell is done, nothing is appended
    assert len(pd.read_parquet(out / "scale.parquet")) == len(df)
