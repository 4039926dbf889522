# SPDX-License-Identifier: MIT
"""Launching real multi-process jobs from a test: ``python -m torch.distributed.run``
(torchrun) with the gloo backend on the CPU, one thread per rank (imported by name)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

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
