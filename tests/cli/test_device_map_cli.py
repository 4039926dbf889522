# SPDX-License-Identifier: MIT
"""``--device-map`` through the real CLI on a tiny random-init llama: ``spectra``,
``surprisal`` and ``hessian`` write the same tables with ``--device-map auto`` (and an
explicit per-module map) as without one; the map is a resumable setting; bad maps and a
map under a launcher are one-line errors. (On this CPU every map is one device; placement
over two GPUs is tested in tests/spectra/test_device_map.py, marked ``gpu``.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from thoughtgrad.cli import main

QUESTIONS = [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have?"
             for i in range(4)]
ANSWERS = [f"{i} + {i + 3} = {2 * i + 3}. The final answer is {2 * i + 3}" for i in range(4)]
CPU_MAP = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
           "model.layers.1": "cpu", "model.norm": "cpu", "lm_head": "cpu"}


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    from thoughtgrad.models.tiny import build_tokenizer, save_tiny

    tok = build_tokenizer(QUESTIONS + ANSWERS, vocab_size=300)
    return save_tiny(tmp_path_factory.mktemp("llama"), "llama", tok, seed=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    f = tmp_path_factory.mktemp("data") / "apples_with_cot.json"
    f.write_text(json.dumps([{"instruction": q, "input": "", "output": a}
                             for q, a in zip(QUESTIONS, ANSWERS, strict=True)]))
    return f


def _run(argv: list[object], capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for col in want.columns:
        if pd.api.types.is_float_dtype(want[col]):
            np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float),
                                       rtol=1e-12, err_msg=col)
        else:
            assert got[col].astype(str).tolist() == want[col].astype(str).tolist(), col


def test_spectra_with_a_device_map_writes_the_same_table(tmp_path, llama_dir, data, capsys):
    base = ["spectra", "--model", llama_dir, "--data", data, "--dtype", "fp64"]
    assert _run([*base, "--device", "cpu", "--out", tmp_path / "one"], capsys)[0] == 0
    want = pd.read_parquet(tmp_path / "one" / "spectra.parquet")
    for name, device_map in [("auto", "auto"), ("map", json.dumps(CPU_MAP))]:
        rc, _, err = _run([*base, "--device-map", device_map, "--out", tmp_path / name], capsys)
        assert rc == 0, err
        _same(pd.read_parquet(tmp_path / name / "spectra.parquet"), want)
    manifest = json.loads((tmp_path / "map" / "manifest.json").read_text())
    assert manifest["config"]["device_map"] == json.dumps(CPU_MAP)
    assert "device_map" not in manifest["identity"]  # placement changes no number
    rc, out, err = _run([*base, "--device", "cpu", "--out", tmp_path / "auto"], capsys)
    assert rc == 0 and "4 already done" in out, err  # resumed without the map


def test_surprisal_and_hessian_with_a_device_map(tmp_path, llama_dir, data, capsys):
    for command, table, extra in [("surprisal", "surprisal", []),
                                  ("hessian", "hessian", ["--trace-samples", "2",
                                                          "--max-iter", "8", "--limit", "2"])]:
        tables = []
        for placement in (["--device", "cpu"], ["--device-map", "auto"]):
            out = tmp_path / f"{command}-{placement[0][2:]}"
            rc, _, err = _run([command, "--model", llama_dir, "--data", data, "--out", out,
                               *placement, *extra], capsys)
            assert rc == 0, err
            tables.append(pd.read_parquet(out / f"{table}.parquet"))
        _same(tables[1], tables[0])


def test_bad_device_maps_are_one_line(tmp_path, llama_dir, data, capsys):
    base = ["spectra", "--model", llama_dir, "--data", data, "--out", tmp_path / "r"]
    for device_map, why in [("everywhere", "not one of auto"), ("{oops", "not valid JSON")]:
        rc, _, err = _run([*base, "--device-map", device_map], capsys)
        assert rc == 2 and "Traceback" not in err and why in err, err


def test_a_device_map_under_a_launcher_is_refused(tmp_path, llama_dir, data, monkeypatch):
    from thoughtgrad.distributed import World
    from thoughtgrad.errors import UserError
    from thoughtgrad.experiments.spectra_config import SpectraConfig
    from thoughtgrad.experiments.spectra_run import run_spectra
    from thoughtgrad.runs.store import RunDir

    cfg = SpectraConfig(model=str(llama_dir), data=(str(data),), device_map="auto")
    with pytest.raises(UserError, match="under a launcher"):
        run_spectra(cfg, RunDir(tmp_path / "r"), world=World(rank=0, size=2))
    assert not (tmp_path / "r").exists()
