# SPDX-License-Identifier: MIT
"""The run directory: manifest, shards, resume identity, one-line errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from thoughtgrad.errors import UserError
from thoughtgrad.runs.store import RunDir, read_table


def test_shards_append_and_read_back_in_order(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", command="test", config={"a": 1}, seed=3)
    assert run.append("t", []) is None  # nothing to write, no empty shard
    run.append("t", [{"x": 1, "y": "a"}])
    run.append("t", pd.DataFrame({"x": [2, 3], "y": ["b", "c"]}))
    assert sorted(p.name for p in run.table_path("t").iterdir()) == [
        "part-00000.parquet", "part-00001.parquet"]
    df = pd.read_parquet(run.table_path("t"))  # plain pandas reads the shard directory
    assert sorted(df["x"]) == [1, 2, 3]
    assert list(run.read("t")["y"]) == ["a", "b", "c"]
    run.write("t", pd.DataFrame({"x": [9]}))  # a single file replaces the shards
    assert run.table_path("t").is_file() and list(read_table(run.table_path("t"))["x"]) == [9]
    with pytest.raises(UserError, match="single-file table"):
        run.append("t", [{"x": 1}])


def test_replace_rows_swaps_one_group_and_never_duplicates(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", command="test")
    empty = pd.DataFrame(columns=["regime", "sample_id"])
    assert run.replace_rows("f", "regime", "cot", empty).empty
    assert not run.has_table("f")  # no table and nothing to write: no empty file
    run.append("f", [{"regime": "cot", "sample_id": 1}, {"regime": "direct", "sample_id": 2}])
    for _ in range(2):  # a rerun of the same regime replaces its rows
        run.replace_rows("f", "regime", "cot", pd.DataFrame({"regime": ["cot"] * 2,
                                                             "sample_id": [6, 9]}))
    got = run.read("f")
    assert list(zip(got["regime"], got["sample_id"], strict=True)) == [
        ("direct", 2), ("cot", 6), ("cot", 9)]
    run.replace_rows("f", "regime", "cot", empty)  # the regime no longer fails anything
    assert list(run.read("f")["regime"]) == ["direct"]


def test_manifest_records_and_resumes(tmp_path: Path) -> None:
    run = RunDir.create(tmp_path / "r", command="test", config={"lr": 0.1}, seed=7)
    m = run.manifest()
    assert m["status"] == "running" and m["seed"] == 7 and m["config"] == {"lr": 0.1}
    assert "torch" in m["versions"] and "python" in m["versions"]
    run.set_status("completed", seconds=1.5)
    again = RunDir.create(tmp_path / "r", command="test", config={"lr": 0.1}, seed=7)
    m2 = again.manifest()
    assert m2["resumed"] == 1 and m2["created"] == m["created"] and m2["status"] == "running"
    with pytest.raises(ValueError):
        run.set_status("done")


def test_manifest_is_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        run = RunDir.create(tmp_path / "r", command="test")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((run.path / "manifest.json").stat().st_mode)
    assert mode == 0o644


def test_identity_refuses_changed_settings_in_one_line(tmp_path: Path) -> None:
    ident = {"seed": 0, "train": {"lr": 0.001, "steps": 10}, "model": "m"}
    RunDir.create(tmp_path / "r", command="toy", identity=ident)
    RunDir.create(tmp_path / "r", command="toy", identity=ident)  # same settings: resume
    changed = {**ident, "train": {"lr": 0.002, "steps": 10}}
    with pytest.raises(UserError) as info:
        RunDir.create(tmp_path / "r", command="toy", identity=changed)
    msg = str(info.value)
    assert "\n" not in msg and "train.lr: 0.001 -> 0.002" in msg and "use a new --out" in msg
    assert "steps" not in msg  # only what changed is named
    # nothing was written by the refused call
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["identity"] == ident


def test_identity_accepts_a_setting_added_since_at_its_unset_default(tmp_path: Path) -> None:
    RunDir.create(tmp_path / "r", command="toy", identity={"model": {"n_layer": 4}})
    RunDir.create(tmp_path / "r", command="toy",
                  identity={"model": {"n_layer": 4, "loops_grad": None}})
    with pytest.raises(UserError, match="loops_grad"):
        RunDir.create(tmp_path / "r", command="toy",
                      identity={"model": {"n_layer": 4, "loops_grad": 2}})


def test_identity_recorded_under_the_old_per_command_key_is_still_checked(tmp_path: Path
                                                                          ) -> None:
    run = RunDir.create(tmp_path / "d", command="demo")
    run.update_manifest(demo_identity={"toy_steps": 30})  # how a demo recorded it before
    with pytest.raises(UserError, match=r"toy_steps: 30 -> 40"):
        RunDir.create(tmp_path / "d", command="demo", identity={"toy_steps": 40})
    RunDir.create(tmp_path / "d", command="demo", identity={"toy_steps": 30})  # resumes


def test_unwritable_directory_and_missing_table(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="not writable"):
        RunDir.create(blocker / "run", command="test")
    with pytest.raises(UserError, match="no such table"):
        read_table(tmp_path / "nope.parquet")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{")
    with pytest.raises(UserError, match="corrupt manifest"):
        RunDir(tmp_path / "bad").manifest()


def test_file_sha256_sees_every_change(tmp_path: Path) -> None:
    import hashlib

    from thoughtgrad.runs.store import file_sha256

    f = tmp_path / "data.jsonl"
    for text in ("abc", "abcd", "abce"):  # a longer file, then the same size, new bytes
        f.write_text(text)
        st = f.stat()
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a later write's time
        assert file_sha256(f) == hashlib.sha256(text.encode()).hexdigest()
        assert file_sha256(f) == file_sha256(str(f))
