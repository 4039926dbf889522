# SPDX-License-Identifier: MIT
"""Launching real multi-process jobs from a test: ``python -m torch.distributed.run``
(torchrun) with the gloo backend on the CPU, one thread per rank; killing one rank of a
running job; and comparing a job's table, or its merged spectra table, with a one-process
run's (imported by name)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

REPO = Path(__file__).resolve().parents[1]


def env() -> dict[str, str]:
    """The environment of a child: this checkout's sources, one thread, no launch inherited."""
    out = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    return {**out, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"),
            "CUDA_VISIBLE_DEVICES": ""}


def torchrun_argv(nproc: int, argv: Sequence[object], *, script: Path | None = None
                  ) -> list[str]:
    """``torchrun --standalone --nproc_per_node N -m thoughtgrad ARGV`` (a free port), or
    ``... SCRIPT ARGV`` with a ``script``."""
    target = [str(script)] if script is not None else ["-m", "thoughtgrad"]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", *target, *map(str, argv)]


def torchrun(nproc: int, argv: Sequence[object], *, timeout: float = 300,
             script: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``thoughtgrad ARGV`` (or ``script ARGV``) on ``nproc`` ranks to the end."""
    return subprocess.run(torchrun_argv(nproc, argv, script=script), capture_output=True,
                          text=True, timeout=timeout, env=env())


def one_process(argv: Sequence[object], *, timeout: float = 300
                ) -> subprocess.CompletedProcess:
    """Run ``python -m thoughtgrad ARGV`` alone (no launcher)."""
    return subprocess.run([sys.executable, "-m", "thoughtgrad", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, env=env())


def kill_rank(job: subprocess.Popen, rank: int, ready: Callable[[], bool], *,
              timeout: float = 120) -> None:
    """SIGKILL the worker of ``rank`` of a running torchrun ``job`` as soon as ``ready()``
    (polled every 10 ms) is true; fails when the job ends or ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and job.poll() is None:
        if ready():
            for child in psutil.Process(job.pid).children(recursive=True):
                try:
                    if child.environ().get("RANK") == str(rank):
                        child.send_signal(signal.SIGKILL)
                        return
                except psutil.NoSuchProcess:
                    continue
        time.sleep(0.01)
    raise AssertionError(f"rank {rank} was never killed: not ready before the job ended "
                         f"(exit {job.poll()}) or {timeout} s passed")


def killed_run(nproc: int, argv: Sequence[object], rank: int, ready: Callable[[], bool], *,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``thoughtgrad ARGV`` on ``nproc`` ranks, SIGKILL ``rank`` once ``ready()``
    (:func:`kill_rank`), and wait for the job to end; its output and exit code."""
    job = subprocess.Popen(torchrun_argv(nproc, argv), env=env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        kill_rank(job, rank, ready, timeout=timeout)
        out, err = job.communicate(timeout=timeout)
    finally:
        if job.poll() is None:
            job.kill()
            job.communicate()
    return subprocess.CompletedProcess(job.args, job.returncode, out, err)


def assert_same_rows(got: pd.DataFrame, want: pd.DataFrame, key: list[str], *,
                     rtol: float = 1e-6) -> None:
    """The same rows by ``key`` (none twice in ``got``): float columns within ``rtol``
    relative (NaN where NaN), all others equal as text; every mismatching column named."""
    assert not got.duplicated(key).any(), f"a {key} row written twice"
    got, want = (df.sort_values(key).reset_index(drop=True) for df in (got, want))
    assert got[key].values.tolist() == want[key].values.tolist()
    assert sorted(got.columns) == sorted(want.columns)
    bad = []
    for col in want.columns:
        g, w = got[col], want[col]
        if w.dtype.kind == "f":
            ok = np.allclose(g.to_numpy(float), w.to_numpy(float), rtol=rtol, atol=0,
                             equal_nan=True)
        else:
            ok = g.astype(str).tolist() == w.astype(str).tolist()
        if not ok:
            bad.append(f"{col}: {g.tolist()} != {w.tolist()}")
    assert not bad, "\n".join(bad)


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
