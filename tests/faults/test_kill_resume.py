# SPDX-License-Identifier: MIT
"""A real SIGKILL at a random point of a run, then the same command again: the tables equal
those of a run that was never interrupted (no row lost, none twice), for every command that
writes a run directory and can be resumed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from .conftest import REPO, run_cli_subprocess

TIME_COLUMNS = ("seconds", "wall", "time", "updated", "created", "elapsed", "tokens_per_s")
SEEDS = (1, 2)


def _tables(run: Path) -> dict[str, pd.DataFrame]:
    """Every Parquet table of a run, rows in a canonical order, timing columns dropped."""
    out = {}
    for p in sorted(run.glob("*.parquet")):
        df = pd.read_parquet(p)
        df = df[[c for c in df.columns if not any(t in c for t in TIME_COLUMNS)]]
        keys = [c for c in df.columns if df[c].dtype != object or
                df[c].map(lambda v: isinstance(v, str)).all()]
        out[p.stem] = df.sort_values(keys).reset_index(drop=True) if keys else df
    return out


def _assert_same_tables(a: Path, b: Path) -> None:
    ta, tb = _tables(a), _tables(b)
    assert sorted(ta) == sorted(tb), f"tables differ: {sorted(ta)} vs {sorted(tb)}"
    for name in ta:
        x, y = ta[name], tb[name]
        assert list(x.columns) == list(y.columns), name
        assert len(x) == len(y), f"{name}: {len(x)} rows uninterrupted, {len(y)} after kill"
        for col in x.columns:
            if pd.api.types.is_float_dtype(x[col]):
                np.testing.assert_allclose(x[col].to_numpy(float), y[col].to_numpy(float),
                                           rtol=1e-5, atol=1e-7, equal_nan=True,
                                           err_msg=f"{name}.{col}")
            else:
                assert x[col].astype(str).tolist() == y[col].astype(str).tolist(), \
                    f"{name}.{col}"


def _kill_then_resume(argv: list[object], out: Path, started: Callable[[Path], bool],
                      seed: int) -> bool:
    """Start the command, SIGKILL it a random time after ``started(out)`` holds, then run
    it again to the end. Returns whether the kill landed before the run finished."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "thoughtgrad", *map(str, argv)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 240
    while not started(out) and proc.poll() is None:
        assert time.time() < deadline, "the run never started writing"
        time.sleep(0.05)
    time.sleep(random.Random(seed).uniform(0.0, 1.5))
    landed = proc.poll() is None
    if landed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    res = run_cli_subprocess(argv)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return landed


def _reference_then_killed(command: Callable[[Path], list[object]], tmp_path: Path,
                           started: Callable[[Path], bool], seed: int) -> tuple[Path, Path]:
    """Run ``command(out)`` once uninterrupted into ``ref`` and once killed-then-resumed
    into ``killed``; the tables of both are compared to be equal."""
    ref, out = tmp_path / "ref", tmp_path / "killed"
    res = run_cli_subprocess(command(ref))
    assert res.returncode == 0, res.stderr
    _kill_then_resume(command(out), out, started, seed)
    _assert_same_tables(ref, out)
    return ref, out


def _any_part(out: Path) -> bool:
    return any(out.glob("*.parquet/part-*.parquet"))


def _spectra(model: Path, data: Path, out: Path) -> list[object]:
    return ["spectra", "--model", model, "--data", data, "--data", data.with_name("b.json"),
            "--out", out, "--batch-tokens", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def spectra_data(tmp_path_factory) -> Path:
    from .conftest import ANSWERS, QUESTIONS, write_records

    d = tmp_path_factory.mktemp("kdata")
    recs = [{"instruction": q, "input": "", "output": a}
            for q, a in zip(QUESTIONS * 3, ANSWERS * 3, strict=True)]
    write_records(d / "b.json", recs[::-1])
    return write_records(d / "a.json", recs)


@pytest.mark.parametrize("seed", SEEDS)
def test_spectra_killed_and_resumed_equals_uninterrupted(seed: int, tmp_path: Path,
                                                         llama_dir: Path,
                                                         spectra_data: Path) -> None:
    _reference_then_killed(lambda o: _spectra(llama_dir, spectra_data, o), tmp_path,
                           _any_part, seed)



def _train(base: Path, out: Path) -> list[object]:
    return ["train", "--model", base, "--data", "toy:addition", "--regime", "cot",
            "--steps", "24", "--out", out, "--batch-size", "8", "--checkpoint-every", "3",
            "--curvature-every", "4", "--curvature-max-iter", "6", "--limit", "64",
            "--device", "cpu"]


@pytest.mark.parametrize("seed", SEEDS)
def test_train_killed_and_resumed_equals_uninterrupted(seed: int, tmp_path: Path,
                                                       toy_base: Path) -> None:
    _reference_then_killed(lambda o: _train(toy_base, o), tmp_path, _any_part, seed)


def _toy_train(out: Path) -> list[object]:
    return ["toy", "train", "--regime", "cot", "--steps", "60", "--train-size", "200",
            "--layers", "1", "--d-model", "32", "--heads", "2", "--batch-size", "16",
            "--eval-per-k", "5", "--set", "train.checkpoint_every=10", "--device", "cpu",
            "--out", out]


@pytest.mark.parametrize("seed", SEEDS)
def test_toy_train_killed_and_resumed_equals_uninterrupted(seed: int, tmp_path: Path) -> None:
    ref, out = _reference_then_killed(_toy_train, tmp_path,
                                      lambda o: (o / "checkpoints").exists(), seed)
    a = sorted((ref / "checkpoints").rglob("*.safetensors"))
    b = sorted((out / "checkpoints").rglob("*.safetensors"))
    assert [p.relative_to(ref) for p in a] == [p.relative_to(out) for p in b]
    from safetensors.torch import load_file

    for x, y in zip(a, b, strict=True):
        wx, wy = load_file(x), load_file(y)
        assert sorted(wx) == sorted(wy)
        for k in wx:
            np.testing.assert_allclose(wx[k].numpy(), wy[k].numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"{x.name}:{k}")


def _surprisal(model: Path, data: Path, out: Path) -> list[object]:
    return ["surprisal", "--model", model, "--data", data, "--out", out, "--batch-size", "2",
            "--device", "cpu"]


@pytest.mark.parametrize("seed", SEEDS[:1])
def test_surprisal_killed_and_rerun_equals_uninterrupted(seed: int, tmp_path: Path,
                                                         llama_dir: Path,
                                                         spectra_data: Path) -> None:
    _reference_then_killed(lambda o: _surprisal(llama_dir, spectra_data, o), tmp_path,
                           lambda o: (o / "manifest.json").exists(), seed)
