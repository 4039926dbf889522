# SPDX-License-Identifier: MIT
"""Corrupted run directories: a truncated shard, a deleted or corrupt manifest, a write
that fails (disk full), a half-finished batch. Each gives at most one line and loses
nothing already written; a resumed spectra run ends with the same table as one that was
never damaged."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from thoughtgrad.errors import UserError
from thoughtgrad.runs.store import BATCHES, IDENTITY, QUARANTINE, RunDir

from .conftest import run_cli, snapshot
from .test_kill_resume import _assert_same_tables


def _rows(n: int, start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"sample_id": range(start, start + n), "x": [1.5] * n})


def _spectra(fx_llama: Path, data: Path, out: Path, *extra: object) -> list[object]:
    return ["spectra", "--model", fx_llama, "--data", data, "--out", out,
            "--batch-tokens", "64", "--device", "cpu", *extra]


# -- the store itself ----------------------------------------------------------------------
def test_a_batch_is_all_or_nothing(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", command="t")
    run.append_batch({"a": _rows(2), "b": _rows(2)})
    # a writer killed before its commit record: temporary shards only
    for name in ("a", "b"):
        (run.table_path(name) / ".part-00001.parquet.tmp").write_bytes(b"half")
    # a writer killed after its commit record, before the renames
    _rows(3, 10).to_parquet(run.table_path("a") / ".part-00002.parquet.tmp")
    _rows(3, 10).to_parquet(run.table_path("b") / ".part-00002.parquet.tmp")
    (run.path / BATCHES / "00002").write_text('["a", "b"]\n')
    run = RunDir.create(tmp_path / "r", command="t")  # resume: recover
    for name in ("a", "b"):
        assert sorted(run.read(name)["sample_id"]) == [0, 1, 10, 11, 12]
        assert not list(run.table_path(name).glob(".*tmp"))


def test_a_failed_write_is_one_line_and_keeps_earlier_shards(tmp_path: Path,
                                                              monkeypatch) -> None:
    run = RunDir.create(tmp_path / "r", command="t")
    run.append_batch({"a": _rows(2), "b": _rows(2)})
    before = snapshot(run.path)

    def full(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1")  # a few bytes land, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(UserError, match="No space left on device"):
        run.append_batch({"a": _rows(2, 5), "b": _rows(2, 5)})
    monkeypatch.undo()
    assert snapshot(run.path) == before
    assert sorted(run.read("a")["sample_id"]) == [0, 1]


def test_a_truncated_shard_is_quarantined_with_its_batch(tmp_path: Path, caplog) -> None:
    run = RunDir.create(tmp_path / "r", command="t")
    run.append_batch({"a": _rows(2), "b": _rows(2)})
    run.append_batch({"a": _rows(2, 2), "b": _rows(2, 2)})
    shard = run.table_path("a") / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:40])
    # a reader skips it with a note and moves nothing
    notes: list[str] = []
    from thoughtgrad.runs.store import read_table

    assert sorted(read_table(run.table_path("a"), notes=notes)["sample_id"]) == [0, 1]
    assert len(notes) == 1 and "part-00001.parquet" in notes[0] and shard.is_file()
    # a writer quarantines it and the other table's shard of the same batch
    run.check("a", "b")
    assert (run.table_path("a") / QUARANTINE / "part-00001.parquet").is_file()
    assert (run.table_path("b") / QUARANTINE / "part-00001.parquet").is_file()
    assert sorted(run.read("b")["sample_id"]) == [0, 1]
    assert sorted(pd.read_parquet(run.table_path("a"))["sample_id"]) == [0, 1]  # plain pandas


def test_a_fresh_run_is_not_called_resumed(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", command="t", identity={"x": 1})
    assert "resumed" not in run.manifest()
    run = RunDir.create(tmp_path / "r", command="t", identity={"x": 1})
    assert run.manifest()["resumed"] == 1


def test_another_command_is_refused(tmp_path: Path) -> None:
    RunDir.create(tmp_path / "r", command="spectra")
    with pytest.raises(UserError, match="holds a 'spectra' run"):
        RunDir.create(tmp_path / "r", command="surprisal")


def test_a_deleted_manifest_still_refuses_other_settings(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", command="t", identity={"loss": "mean"})
    run.append("a", _rows(2))
    (run.path / "manifest.json").unlink()
    with pytest.raises(UserError, match="loss"):
        RunDir.create(tmp_path / "r", command="t", identity={"loss": "sum"})
    run = RunDir.create(tmp_path / "r", command="t", identity={"loss": "mean"})  # resumes
    assert run.manifest()["identity"] == {"loss": "mean"}
    # with the identity copy gone too, tables of unknown settings are refused
    (run.path / "manifest.json").unlink()
    (run.path / IDENTITY).unlink()
    with pytest.raises(UserError, match="no manifest.json"):
        RunDir.create(tmp_path / "r", command="t", identity={"loss": "mean"})


# -- through the CLI -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_files(tmp_path_factory) -> Path:
    from .conftest import ANSWERS, QUESTIONS, write_records

    d = tmp_path_factory.mktemp("cdata")
    recs = [{"instruction": q, "input": "", "output": a}
            for q, a in zip(QUESTIONS * 2, ANSWERS * 2, strict=True)]
    return write_records(d / "a.json", recs)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, llama_dir: Path, two_files: Path) -> Path:
    from thoughtgrad.cli import main

    out = tmp_path_factory.mktemp("ref") / "run"
    assert main([str(a) for a in _spectra(llama_dir, two_files, out)]) == 0
    return out


def test_truncated_shard_resume_measures_it_again(tmp_path: Path, llama_dir: Path,
                                                  two_files: Path, reference: Path,
                                                  capsys, caplog) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    shard = sorted((out / "spectra.parquet").glob("part-*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[:100])
    # the report still reads the good shards and names the bad one
    res = run_cli(["report", out, "--out", out / "report.html"], capsys)
    assert res.rc == 0 and shard.name in res.err + res.out
    # resuming quarantines it (and its batch) and measures those samples again
    res = run_cli(_spectra(llama_dir, two_files, out), capsys)
    assert res.rc == 0, res.err
    assert shard.name in caplog.text and "Traceback" not in res.err
    _assert_same_tables(reference, out)


@pytest.mark.parametrize("damage", ["deleted", "corrupt"])
def test_manifest_damage_is_one_line_or_checked(damage: str, tmp_path: Path, llama_dir: Path,
                                                two_files: Path, reference: Path,
                                                capsys) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    manifest = out / "manifest.json"
    if damage == "deleted":
        manifest.unlink()
    else:
        manifest.write_text('{"command": "spectra", "identity": {')
    before = snapshot(out)
    res = run_cli(_spectra(llama_dir, two_files, out, "--loss-reduction", "sum"), capsys)
    errors = [ln for ln in res.err.splitlines() if "error:" in ln]
    assert res.rc == 2 and len(errors) == 1 and "Traceback" not in res.err, res.err
    assert ("loss_reduction" if damage == "deleted" else "manifest") in errors[0]
    assert snapshot(out) == before
    if damage == "deleted":  # the same settings resume, adding nothing
        assert run_cli(_spectra(llama_dir, two_files, out), capsys).rc == 0
        _assert_same_tables(reference, out)
        assert json.loads(manifest.read_text())["status"] == "completed"
