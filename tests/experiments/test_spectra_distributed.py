# SPDX-License-Identifier: MIT
"""``thoughtgrad spectra`` on two real processes (torchrun, gloo, CPU) on a tiny llama: the
merged table equals a one-process run, a rank killed mid-run is finished by a one-process
rerun with no row twice, and the work is split by sample key.

Weights are fp64 so the comparison is of the arithmetic, not of fp32 rounding: the two
runs batch different samples together, and a singular value near zero has a large
relative rounding error in fp32. Statistics agree within 1e-6 relative; ``sigma_min``
below the numerical-rank floor (``RANK_RTOL`` x sigma_max, where a singular value is
rounding noise of the QR cores by the metric's own definition) is compared to that floor."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from launch_fixtures import assert_same_spectra, killed_run, torchrun

from thoughtgrad.distributed import owner
from thoughtgrad.experiments.spectra_config import SpectraConfig
from thoughtgrad.experiments.spectra_run import run_spectra
from thoughtgrad.runs.store import RunDir

N = 8
QUESTIONS = [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have?"
             for i in range(N)]
COT = [f"He starts with {i}. He buys {i + 3}. {i} + {i + 3} = {2 * i + 3}.\n"
       f"The final answer is {2 * i + 3}" for i in range(N)]
OPTIONS = ["--dtype", "fp64", "--device", "cpu", "--batch-tokens", "96"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from thoughtgrad.models.tiny import build_tokenizer, save_tiny

    tok = build_tokenizer(QUESTIONS + COT, vocab_size=300)
    return save_tiny(tmp_path_factory.mktemp("llama"), "llama", tok, seed=1)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("cot_500")
    no_cot, cot = d / "apples_no_cot.json", d / "apples_with_cot.json"
    no_cot.write_text(json.dumps([{"instruction": q, "input": "", "output": str(2 * i + 3)}
                                  for i, q in enumerate(QUESTIONS)]))
    cot.write_text(json.dumps([{"instruction": q, "input": "", "output": c}
                               for q, c in zip(QUESTIONS, COT, strict=True)]))
    return [no_cot, cot]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_dir, data) -> pd.DataFrame:
    """The same command in this process, alone."""
    cfg = SpectraConfig(model=str(model_dir), data=tuple(map(str, data)), dtype="fp64",
                        device="cpu", batch_tokens=96)
    out = tmp_path_factory.mktemp("one")
    run = RunDir.create(out, command="spectra", config=cfg, identity=cfg.identity())
    run_spectra(cfg, run)
    return pd.read_parquet(out / "spectra.parquet")


def _argv(model_dir: Path, data: list[Path], out: Path) -> list[object]:
    return ["spectra", "--model", model_dir, *[a for p in data for a in ("--data", p)],
            "--out", out, *OPTIONS]


def test_owner_is_a_stable_partition() -> None:
    keys = [(s, i) for s in ("a.json", "b.json") for i in range(200)]
    shares = [[k for k in keys if owner(k, 3) == r] for r in range(3)]
    assert sum(map(len, shares)) == len(keys) and all(len(s) > 40 for s in shares)
    assert owner(("a.json", 7), 3) == owner(("a.json", 7), 3)
    assert {owner(k, 1) for k in keys} == {0}


def test_two_ranks_equal_one_process(tmp_path, model_dir, data, reference) -> None:
    out = tmp_path / "two"
    res = torchrun(2, _argv(model_dir, data, out))
    assert res.returncode == 0, res.stderr[-3000:]
    assert_same_spectra(pd.read_parquet(out / "spectra.parquet"), reference)
    shards = sorted(p.name for p in (out / "spectra.parquet").glob("part-*.parquet"))
    assert {s.split("-")[2].split(".")[0] for s in shards} == {"r000", "r001"}, shards
    per_rank = pd.concat(pd.read_parquet(out / "spectra_samples.parquet" / s).assign(
        rank=int(s.split("-r")[1][:3])) for s in shards)
    assert all(owner((src, sid), 2) == r for src, sid, r in
               zip(per_rank["source"], per_rank["sample_id"], per_rank["rank"], strict=True))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["counts"] == {"samples": 2 * N, "done": 2 * N, "failed": 0,
                                  "truncated": 0}
    assert f"{2 * N} samples" in res.stdout  # rank 0 prints the whole job
    assert f"spectra: {2 * N} samples to measure" in res.stderr  # the whole job
    assert f"/{2 * N} samples" in res.stderr


def test_killed_rank_then_one_process_completes(tmp_path, model_dir, data, reference) -> None:
    from launch_fixtures import one_process

    out = tmp_path / "killed"
    argv = _argv(model_dir, data, out)
    table = out / "spectra.parquet"
    killed = killed_run(2, argv, 1, lambda: table.is_dir() and any(  # its first shard
        table.glob("part-*-r001.parquet")))
    assert killed.returncode != 0, "the job finished although a rank was killed"
    partial = pd.read_parquet(out / "spectra_samples.parquet")
    assert 0 < len(partial) < 2 * N, f"{len(partial)} samples: the kill was not mid-run"
    res = one_process(argv)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"{len(partial)} already done" in res.stdout
    assert_same_spectra(pd.read_parquet(out / "spectra.parquet"), reference)
    samples = pd.read_parquet(out / "spectra_samples.parquet")
    assert len(samples) == 2 * N and not samples.duplicated(["source", "sample_id"]).any()
    assert json.loads((out / "manifest.json").read_text())["counts"]["done"] == 2 * N
