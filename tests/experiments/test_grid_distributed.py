# SPDX-License-Identifier: MIT
"""``thoughtgrad grid`` on two real processes (torchrun, gloo, CPU) on a tiny llama and a
tiny grid (gsm8k and its derived sum cell): every cell's merged table equals a one-process
grid's, each rank measured the samples it owns, the manifests (rank 0's) count the whole
job; and (marked ``slow``: one more launch, ~8 s) the same launch again skips the finished
cell on every rank.

Weights are fp64, as in test_spectra_distributed.py: the two runs batch different samples
together, so the comparison is of the arithmetic (within 1e-6 relative), not of fp32
rounding."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from grid_fixtures import N_RECORDS, write_data_root
from launch_fixtures import assert_same_spectra, torchrun

from thoughtgrad.distributed import owner
from thoughtgrad.experiments.grid import Grid, GridConfig

CELLS = ("gsm8k", "gsm8k-sum")
OPTIONS = ["--datasets", "gsm8k", "--controls", "sum", "--dtype", "fp64", "--device", "cpu",
           "--batch-tokens", "160"]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_data_root(tmp_path_factory.mktemp("layer_gradient"), datasets=("gsm8k",))


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, model_dir, root) -> Path:
    """The same grid in this process, alone."""
    out = tmp_path_factory.mktemp("one")
    cfg = GridConfig(model=str(model_dir), data_root=str(root), datasets=("gsm8k",),
                     controls=("sum",), dtype="fp64", device="cpu", batch_tokens=160)
    assert [r.status for r in Grid(cfg, out).run_all()] == ["completed", "derived"]
    return out


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, model_dir, root):
    """The grid launched on two ranks: its directory, the command and the finished job."""
    out = tmp_path_factory.mktemp("two") / "grid"
    argv = ["grid", "--model", model_dir, "--data-root", root, "--out", out, *OPTIONS]
    return out, argv, torchrun(2, argv)


def test_two_ranks_equal_one_process(two_ranks, one_process) -> None:
    out, _, res = two_ranks
    assert res.returncode == 0, res.stderr[-3000:]
    for cell in CELLS:
        got = pd.read_parquet(out / "cells" / cell / "spectra.parquet")
        assert_same_spectra(got, pd.read_parquet(one_process / "cells" / cell /
                                                 "spectra.parquet"))
    shards = sorted((out / "cells" / "gsm8k" / "spectra_samples.parquet").glob("part-*"))
    assert {p.name.split("-")[2][:4] for p in shards} == {"r000", "r001"}
    for p in shards:
        rank = int(p.name.split("-r")[1][:3])
        df = pd.read_parquet(p)
        assert all(owner((s, i), 2) == rank for s, i in zip(df["source"], df["sample_id"],
                                                             strict=True))
    grid = json.loads((out / "manifest.json").read_text())
    assert grid["status"] == "completed"
    assert [(c["name"], c["status"]) for c in grid["cells"]] == [("gsm8k", "completed"),
                                                                ("gsm8k-sum", "derived")]
    counts = {"samples": 6 * N_RECORDS, "done": 6 * N_RECORDS, "failed": 0, "truncated": 0}
    assert grid["cells"][0]["counts"] == counts
    cell = json.loads((out / "cells" / "gsm8k" / "manifest.json").read_text())
    assert cell["status"] == "completed" and cell["counts"] == counts
    assert res.stderr.count("grid [1/2] gsm8k:") == 2  # rank 0 alone: before and after
    assert "2 cells: 0 already complete, 1 measured, 1 derived, 0 failed" in res.stdout


@pytest.mark.slow
def test_the_same_launch_again_skips_the_finished_cell(two_ranks, one_process) -> None:
    out, argv, first = two_ranks
    assert first.returncode == 0, first.stderr[-3000:]
    again = torchrun(2, argv)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "2 cells: 1 already complete, 0 measured, 1 derived, 0 failed" in again.stdout
    for cell in CELLS:
        assert_same_spectra(pd.read_parquet(out / "cells" / cell / "spectra.parquet"),
                            pd.read_parquet(one_process / "cells" / cell / "spectra.parquet"))
