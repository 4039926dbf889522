# SPDX-License-Identifier: MIT
"""`thoughtgrad toy` end to end on a tiny config, and its one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from thoughtgrad.cli import main
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.toy import ToyConfig

TINY = ["--steps", "30", "--train-size", "200", "--eval-per-k", "5", "--layers", "1",
        "--d-model", "32", "--device", "cpu", "--set", "train.warmup_steps=5",
        "--set", "eval_ks=2,3,7"]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], match: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert match in err, err


def test_study_writes_tables_and_resumes(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["toy", *TINY, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy per K" in printed and "error taxonomy" in printed
    acc = pd.read_parquet(out / "accuracy.parquet")
    assert set(acc["regime"]) == {"direct", "cot"}
    assert sorted(acc["k"].unique()) == [2, 3, 7]
    assert set(acc.columns) >= {"task", "regime", "k", "problem", "prediction", "answer",
                                "correct", "exact", "error_kind", "train_size", "split"}
    # exact implies correct: a whole gold response has the right answer
    assert not (acc["exact"].astype(bool) & ~acc["correct"]).any()
    by_k = pd.read_parquet(out / "accuracy_by_k.parquet")
    assert {"direct", "cot", "gap", "direct_exact", "cot_exact"} <= set(by_k.columns)
    # the printed table marks K outside the trained K values (2..6 here) as OOD
    assert any(line.split()[:2] == ["7", "OOD"] for line in printed.splitlines())
    import json
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["config"]["train"]["steps"] == 30
    assert "torch" in manifest["versions"]
    # A second run finds every cell done: nothing is trained or appended again.
    assert main(["toy", *TINY, "--out", str(out)]) == 0
    assert len(pd.read_parquet(out / "accuracy.parquet")) == len(acc)


def test_train_then_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "one"
    assert main(["toy", "train", "--regime", "cot", *TINY, "--out", str(out)]) == 0
    ckpt = out / "checkpoints" / "addition-n200-cot"
    assert (ckpt / "model.safetensors").exists()
    capsys.readouterr()
    assert main(["toy", "eval", "--checkpoint", str(ckpt), "--out", str(tmp_path / "ev")]) == 0
    acc = pd.read_parquet(tmp_path / "ev" / "accuracy.parquet")
    assert set(acc["regime"]) == {"cot"} and sorted(acc["k"].unique()) == [2, 3, 7]


def test_bad_input_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _one_line_error(capsys, ["toy", "--set", "eval_ks=2,25", "--out", str(tmp_path / "a")],
                    "K=25 is outside 1..20")
    _one_line_error(capsys, ["toy", "--d-model", "130", "--heads", "4", "--out",
                             str(tmp_path / "b")], "not divisible")
    _one_line_error(capsys, ["toy", "eval", "--checkpoint", str(tmp_path / "missing")],
                    "no such directory")
    bad = tmp_path / "corrupt"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (bad / "model.safetensors").write_bytes(b"\x00")
    _one_line_error(capsys, ["toy", "eval", "--checkpoint", str(bad)], "corrupt")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(capsys, ["toy", *TINY, "--out", str(blocker / "run")], "not writable")
    _one_line_error(capsys, ["toy", "--set", "train.lr=fast", "--out", str(tmp_path / "c")],
                    "train.lr")
    _one_line_error(capsys, ["toy", "simulate", "--k", "2,25"], "K=25 is outside 1..20")
    _one_line_error(capsys, ["toy", "simulate", "--layers", "-1"], "layers=-1")
    _one_line_error(capsys, ["toy", "--set", "train_ks=6-2", "--out", str(tmp_path / "d")],
                    "runs backwards")
    with pytest.raises(UserError, match="train_ks is empty"):
        ToyConfig(train_ks=())


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only directories")
def test_read_only_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    _one_line_error(capsys, ["toy", *TINY, "--out", str(ro / "run")], "not writable")


def test_resume_with_other_settings_is_refused(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["toy", "train", "--regime", "direct", *TINY, "--out", str(out)]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["toy", "train", "--regime", "direct", *TINY, "--steps", "40",
                             "--out", str(out)], "train.steps: 30 -> 40")
    # another regime (a new cell) into the same run directory is welcome
    assert main(["toy", "train", "--regime", "cot", *TINY, "--out", str(out)]) == 0
    assert (out / "checkpoints" / "addition-n200-cot" / "model.safetensors").exists()


def test_options_before_a_subcommand_reach_it(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "early"
    assert main(["toy", *TINY, "--out", str(out), "train", "--regime", "direct"]) == 0
    import json
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["train"]["steps"] == 30
    assert manifest["config"]["model"]["n_layer"] == 1
    ckpt = out / "checkpoints" / "addition-n200-direct"
    capsys.readouterr()
    _one_line_error(capsys, ["toy", "--steps", "3", "eval", "--checkpoint", str(ckpt)],
                    "drop --steps")
    _one_line_error(capsys, ["toy", "--task", "addition,fold", "train", "--out",
                             str(tmp_path / "x")], "takes one --task")
    # every task of a sweep is checked before anything trains
    _one_line_error(capsys, ["toy", *TINY, "--task", "addition,nope", "--out",
                             str(tmp_path / "y")], "unknown toy task 'nope'")
    assert not (tmp_path / "y").exists()


def test_broken_checkpoint_config_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    import json
    out = tmp_path / "one"
    assert main(["toy", "train", "--regime", "direct", *TINY, "--out", str(out)]) == 0
    ckpt = out / "checkpoints" / "addition-n200-direct"
    meta = json.loads((ckpt / "config.json").read_text())
    capsys.readouterr()
    (ckpt / "config.json").write_text(json.dumps({**meta, "n_head": "four"}))
    _one_line_error(capsys, ["toy", "eval", "--checkpoint", str(ckpt)], "invalid model config")
    (ckpt / "config.json").write_text(json.dumps({**meta, "d_model": 64}))
    _one_line_error(capsys, ["toy", "eval", "--checkpoint", str(ckpt)],
                    "weights do not match config.json")


def test_sigterm_marks_the_run_interrupted(tmp_path: Path) -> None:
    """`timeout` / a scheduler sends SIGTERM: the manifest says interrupted, exit 130."""
    import json
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    code = ("import sys; from thoughtgrad.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", code, "toy", "--steps", "100000",
                             "--train-size", "50", "--layers", "1", "--d-model", "32",
                             "--device", "cpu", "--set", "train.checkpoint_every=5",
                             "--out", str(out)],
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    state = out / "checkpoints"
    while not (out / "manifest.json").exists() or not state.exists():
        if time.time() > deadline or proc.poll() is not None:
            proc.kill()  # before reading stderr, which would wait for the 100000 steps
            pytest.fail(f"no checkpoint within the deadline: {proc.communicate()[1]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert json.loads((out / "manifest.json").read_text())["status"] == "interrupted"


def test_study_options_before_a_subcommand_reach_it() -> None:
    from thoughtgrad.cli import build_parser
    from thoughtgrad.cli.toy import build_config

    args = build_parser().parse_args(["toy", "--steps", "30", "--set", "train.warmup_steps=5",
                                      "train", "--layers", "2", "--set", "model.n_loops=2"])
    cfg = build_config(args, command="thoughtgrad toy train")
    assert (cfg.train.steps, cfg.train.warmup_steps) == (30, 5)  # from before `train`
    assert (cfg.model.n_layer, cfg.model.n_loops) == (2, 2)  # from after it
    late = build_parser().parse_args(["toy", "--set", "train.steps=7", "train",
                                      "--set", "train.steps=9"])
    assert build_config(late, command="thoughtgrad toy train").train.steps == 9  # last wins
