# SPDX-License-Identifier: MIT
"""``thoughtgrad toy scale | loops | knobs``: tables written, one-line errors for bad input."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import torch

from thoughtgrad.cli import main
from thoughtgrad.experiments.scale import SCALE_KEY as SCALE_COLUMNS
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
from thoughtgrad.tasks.toy import TOKENIZER

META = {"task": "fold", "regime": "cot", "style": "cot", "train_size": 20, "train_ks": [2, 3],
        "eval_ks": [2, 3], "eval_per_k": 3, "split_seed": 0}


@pytest.fixture
def checkpoint(tmp_path):
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
    steps = argv.index("--steps") + 1
    assert main([*argv[:steps], "3", *argv[steps + 1:]]) == 2  # other settings: refused
    assert len(pd.read_parquet(out / "scale.parquet")) == len(df)


SCALE_KEY = list(SCALE_COLUMNS)


def scale(checkpoint, out, *extra):
    return main(["toy", "scale", "--checkpoint", str(checkpoint), "--samples", "1,2",
                 "--temperature", "1.0", "--out", str(out), *extra])


def test_scale_rerun_skips_rows_already_measured(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    assert scale(checkpoint, out, "--loops", "1,2") == 0
    first = pd.read_parquet(out / "scale.parquet")
    assert len(first) == len(first.drop_duplicates(SCALE_KEY)) == 2 * (1 + 2 + 2)
    assert scale(checkpoint, out, "--loops", "1,2") == 0  # nothing new: nothing appended
    assert pd.read_parquet(out / "scale.parquet").equals(first)
    assert scale(checkpoint, out, "--loops", "2,5") == 0  # only r = 5 is measured
    df = pd.read_parquet(out / "scale.parquet")
    assert len(df) == len(df.drop_duplicates(SCALE_KEY)) == len(first) + 2
    new = df.iloc[len(first):]
    assert set(new.knob) == {"loops"} and set(new.n) == {5}
    pd.testing.assert_frame_equal(df.iloc[: len(first)], first)
    # a second checkpoint joins the same table; the first is not measured again
    other = GPTMini(GPTMiniConfig(vocab_size=TOKENIZER.vocab_size, block_size=64, n_layer=1,
                                  n_head=2, d_model=16, seed=5)).save(tmp_path / "c2",
                                                                      extra=META)
    assert main(["toy", "scale", "--checkpoint", str(checkpoint), "--checkpoint", str(other),
                 "--samples", "1,2", "--temperature", "1.0", "--out", str(out)]) == 0
    df2 = pd.read_parquet(out / "scale.parquet")
    assert len(df2) == len(df2.drop_duplicates(SCALE_KEY)) == len(df) + 2 * (1 + 2)
    assert "compute_flops" in df2 and df2.compute_flops.gt(0).all()


def test_scale_refuses_other_sampling_or_changed_weights(checkpoint, tmp_path, capsys):
    out = tmp_path / "run"
    assert scale(checkpoint, out) == 0
    capsys.readouterr()
    assert scale(checkpoint, out, "--sample-seed", "3") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "sampling.seed: 0 -> 3" in err and "\n" not in err
    model = GPTMini.load(checkpoint)
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)
    model.save(checkpoint, extra=META)  # retrained in place
    assert scale(checkpoint, out) == 2
    err = capsys.readouterr().err.strip()
    assert "measured on other weights" in err and "\n" not in err


def test_loops_rerun_does_not_duplicate(checkpoint, tmp_path):
    out = tmp_path / "loops"
    argv = ["toy", "loops", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*argv, "--loops", "1,2"]) == 0
    assert main([*argv, "--loops", "1,2,3"]) == 0
    df = pd.read_parquet(out / "scale.parquet")
    assert len(df) == len(df.drop_duplicates(SCALE_KEY)) == 2 * 3
    assert {"params", "n_layer", "split", "compute_flops"} <= set(df.columns)


def test_knobs_identity_leaves_out_only_the_grid_axis_and_device():
    from thoughtgrad.experiments.testtime import KnobsConfig, knobs_identity

    base = KnobsConfig()
    ident = knobs_identity(base)
    assert "tasks" not in ident and "device" not in ident["toy"]
    assert knobs_identity(dataclasses.replace(base, tasks=("fold",))) == ident
    changed = dataclasses.replace(base, loop_train=3)
    assert knobs_identity(changed) != ident


def test_knobs_warm_up_is_a_tenth_of_the_steps_unless_set():
    from thoughtgrad.cli import build_parser
    from thoughtgrad.cli.toy_scale import knobs_config
    from thoughtgrad.experiments.testtime import KnobsConfig

    def warmup(*argv: str) -> int:
        args = build_parser().parse_args(["toy", "knobs", *argv])
        return knobs_config(args).toy.train.warmup_steps

    assert warmup() == KnobsConfig().toy.train.warmup_steps == 160
    assert warmup("--steps", "200") == 20 and warmup("--steps", "5") == 1
    assert warmup("--steps", "200", "--set", "train.warmup_steps=7") == 7


def test_knobs_options_come_from_the_config():
    from thoughtgrad.cli import build_parser
    from thoughtgrad.cli.toy_scale import knobs_config

    args = build_parser().parse_args([
        "toy", "knobs", "--task", "fold", "--layers", "1,2", "--cot-layers", "3", "--loops", "1-3",
        "--steps", "50", "--batch-size", "8", "--heads", "2", "--d-model", "32",
        "--train-size", "40", "--seed", "4", "--device", "cpu", "--samples", "1,2",
        "--set", "eval_ks=2,3"])
    cfg = knobs_config(args)
    assert (cfg.tasks, cfg.layers, cfg.cot_layers, cfg.loops) == (("fold",), (1, 2), 3, (1, 2, 3))
    assert (cfg.toy.train.steps, cfg.toy.train.batch_size) == (50, 8)
    assert (cfg.toy.model.n_head, cfg.toy.model.d_model) == (2, 32)
    assert (cfg.toy.train_size, cfg.toy.seed, cfg.toy.device) == (40, 4, "cpu")
    assert cfg.toy.eval_ks == (2, 3) and cfg.sampling.samples == (1, 2)
