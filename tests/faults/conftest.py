# SPDX-License-Identifier: MIT
"""Fixtures of the fault-injection suite: a tiny random-init llama, a small Alpaca-style
data file, a finished spectra run whose files must survive every bad command, and helpers
that run the real CLI and snapshot a directory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from thoughtgrad.cli import main

QUESTIONS = [f"Ann has {i} pens and finds {i + 2} more. How many pens does she have?"
             for i in range(4)]
ANSWERS = [f"She has {i} + {i + 2} = {2 * i + 2} pens.\nThe final answer is {2 * i + 2}"
           for i in range(4)]
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Outcome:
    """What one CLI invocation returned: exit code, stdout, stderr."""

    rc: int
    out: str
    err: str


def run_cli(argv: Sequence[object], capsys: pytest.CaptureFixture[str]) -> Outcome:
    """Run ``thoughtgrad ARGV`` in this process (argparse's exits become exit codes)."""
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: usage errors exit 2
        rc = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return Outcome(int(rc), out, err)


def run_cli_subprocess(argv: Sequence[object], *, timeout: float = 300,
                       env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m thoughtgrad ARGV`` in a child process (one thread)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src"),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "thoughtgrad", *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout, env=full_env)


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` (relative path -> digest)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory) -> Path:
    from thoughtgrad.models.tiny import build_tokenizer, save_tiny

    tok = build_tokenizer(QUESTIONS + ANSWERS, vocab_size=300)
    return save_tiny(tmp_path_factory.mktemp("llama"), "llama", tok, seed=1)


def write_records(path: Path, records: list[dict[str, str]] | None = None) -> Path:
    """An Alpaca-style JSON file (``instruction``, ``input``, ``output``)."""
    if records is None:
        records = [{"instruction": q, "input": "", "output": a}
                   for q, a in zip(QUESTIONS, ANSWERS, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


@pytest.fixture(scope="session")
def good_data(tmp_path_factory) -> Path:
    return write_records(tmp_path_factory.mktemp("data") / "pens_with_cot.json")


@pytest.fixture(scope="session")
def spectra_run(tmp_path_factory, llama_dir: Path, good_data: Path) -> Path:
    """A finished ``thoughtgrad spectra`` run (the results a bad command must not touch)."""
    out = tmp_path_factory.mktemp("runs") / "spectra"
    rc = main(["spectra", "--model", str(llama_dir), "--data", str(good_data),
               "--out", str(out), "--device", "cpu"])
    assert rc == 0
    return out


@pytest.fixture(autouse=True)
def quiet_transformers():
    """transformers' own warnings (e.g. on an unknown model type) are not ours to count:
    the catalogue checks thoughtgrad's error line. Restored after each test."""
    from transformers.utils import logging as hf_logging

    before = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    yield
    hf_logging.set_verbosity(before)
