# SPDX-License-Identifier: MIT
"""Launching real multi-process jobs from a test: ``python -m torch.distributed.run``
(torchrun) with the gloo backend on the CPU, one thread per rank (imported by name), and
the comparison of a launched job's merged spectra table with a one-process run's."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    """The environment of a child: this checkout's sources, one thread, no launch inherited."""
    out = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**out, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"),
            "CUDA_VISIBLE_DEVICES": ""}


def torchrun_argv(nproc: int, argv: Sequence[object]) -> list[str]:
    """``torchrun --standalone --nproc_per_node N -m thoughtgrad ARGV`` (a free port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "thoughtgrad", *map(str, argv)]


def torchrun(nproc: int, argv: Sequence[object], *, timeout: float = 300
             ) -> subprocess.CompletedProcess:
    """Run ``thoughtgrad ARGV`` on ``nproc`` ranks to the end."""
    return subprocess.run(torchrun_argv(nproc, argv), capture_output=True, text=True,
                          timeout=timeout, env=env())


def one_process(argv: Sequence[object], *, timeout: float = 300
                ) -> subprocess.CompletedProcess:
    """Run ``python -m thoughtgrad ARGV`` alone (no launcher)."""
    return subprocess.run([sys.executable, "-m", "thoughtgrad", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, env=env())


SPECTRA_KEY = ["source", "sample_id", "layer", "role", "param"]
SPECTRA_STATS = ["nuclear", "sigma_max", "sigma_min", "ratio", "frobenius", "effective_rank",
                 "n_tokens", "loss"]


def assert_same_spectra(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """The same rows (none twice), statistics within 1e-6 relative, every other column
    equal. ``sigma_min`` below the numerical-rank floor (``RANK_RTOL`` x sigma_max, where a
    singular value is rounding noise of the QR cores by the metric's own definition) is
    compared to that floor: the two runs batch different samples together."""
    from thoughtgrad.spectra.metrics import RANK_RTOL

    assert not got.duplicated(SPECTRA_KEY).any(), "a (sample, matrix) row written twice"
    got, want = (df.sort_values(SPECTRA_KEY).reset_index(drop=True) for df in (got, want))
    assert len(got) == len(want)
    for col in want.columns:
        if col == "sigma_min":
            g, w = got[col].to_numpy(float), want[col].to_numpy(float)
            floor = RANK_RTOL * want["sigma_max"].to_numpy(float)
            assert (np.abs(g - w) <= 1e-6 * np.abs(w) + floor).all(), col
        elif col in SPECTRA_STATS:
            np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float),
                                       rtol=1e-6, atol=1e-12, err_msg=col)
        else:
            assert got[col].astype(str).tolist() == want[col].astype(str).tolist(), col
