# SPDX-License-Identifier: MIT
"""The grid on a tiny random-init llama and a tiny data root: its cells and conditions,
resume after a kill, the derived sum control against a measured one, the instruct/base
decision and one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from grid_fixtures import N_RECORDS, write_data_root

import thoughtgrad.experiments.spectra_run as spectra_run
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.grid import Grid, GridConfig, decide, model_kind, spectra_config
from thoughtgrad.experiments.spectra_tables import COLUMNS
from thoughtgrad.experiments.sum_control import SCALED
from thoughtgrad.runs.store import RunDir
from thoughtgrad.spectra.metrics import RANK_RTOL

KEY = ["source", "sample_id", "layer", "role", "param"]
STATS = ["nuclear", "sigma_max", "sigma_min", "ratio", "frobenius", "effective_rank", "rank",
         "n_tokens", "loss"]
SIGMA_FLOOR = RANK_RTOL
"""Singular values below this fraction of sigma_max count as zero (the rank's threshold):
the fast path's Gram eigenvalues resolve them to about sqrt(eps_64) of sigma_max."""


@pytest.fixture()
def root(tmp_path):
    return write_data_root(tmp_path / "layer_gradient")


def _cfg(model_dir, root, **kw) -> GridConfig:
    kw.setdefault("datasets", ("gsm8k", "wiki_popularity"))
    return GridConfig(model=str(model_dir), data_root=str(root), device="cpu", **kw)


def _table(path, name="spectra") -> pd.DataFrame:
    key = KEY if name == "spectra" else KEY[:2]
    return RunDir(path).read(name).sort_values(key).reset_index(drop=True)


def test_cells_conditions_and_the_same_sample_ids(tmp_path, model_dir, root):
    grid = Grid(_cfg(model_dir, root, controls=("sum", "answer")), tmp_path / "g")
    assert [c.name for c in grid.cells] == ["gsm8k", "gsm8k-sum", "gsm8k-answer",
                                            "wiki_popularity"]
    results = grid.run_all()
    assert [r.status for r in results] == ["completed", "derived", "completed", "completed"]
    m = grid.run.manifest()
    assert m["status"] == "completed" and m["model_kind"] == "base"
    assert m["chat_template"] is False and "plain text" in m["chat_template_reason"]
    assert [c["status"] for c in m["cells"]] == ["completed", "derived", "completed",
                                                "completed"]
    gsm = RunDir(tmp_path / "g" / "cells" / "gsm8k").read("spectra")
    assert list(gsm.columns) == list(COLUMNS)
    conds = gsm.groupby(["cot_level", "response_kind"])["sample_id"].agg(lambda s: sorted(set(s)))
    assert len(conds) == 6 and all(ids == list(range(N_RECORDS)) for ids in conds)
    wiki = RunDir(tmp_path / "g" / "cells" / "wiki_popularity").read("spectra")
    assert wiki["condition"].nunique() == 8
    assert set(wiki.groupby("condition")["sample_id"].nunique()) == {N_RECORDS}
    ans = RunDir(tmp_path / "g" / "cells" / "gsm8k-answer").read("spectra")
    assert (ans["loss_span"] == "answer").all()
    cell = RunDir(tmp_path / "g" / "cells" / "gsm8k").manifest()
    assert cell["command"] == "spectra" and cell["grid"]["cell"] == "gsm8k"


def test_limit_is_shared_by_every_file_of_a_dataset(tmp_path, model_dir, root):
    short = root / "wiki_popularity" / "long_tail_wikipedia.json"
    short.write_text(short.read_text().replace("}, {", "}]#", 1).split("#")[0])  # 1 record
    grid = Grid(_cfg(model_dir, root, datasets=("wiki_popularity",)), tmp_path / "g")
    assert grid.cells[0].limit == 1
    assert Grid(_cfg(model_dir, root, datasets=("gsm8k",), limit=2),
                tmp_path / "h").cells[0].limit == 2


def test_a_killed_grid_resumes_with_the_same_rows_none_twice(tmp_path, model_dir, root,
                                                             monkeypatch):
    cfg = _cfg(model_dir, root, controls=("sum", "random"), batch_tokens=100)
    real = spectra_run.run_spectra
    calls = []

    def killed_in_second_cell(scfg, run, **kw):
        calls.append(scfg.init)
        if len(calls) == 2:  # the random-init cell dies after its first shard
            def die(_n):
                raise KeyboardInterrupt
            return real(scfg, run, progress=die)
        return real(scfg, run, **kw)

    monkeypatch.setattr(spectra_run, "run_spectra", killed_in_second_cell)
    with pytest.raises(KeyboardInterrupt):
        Grid(cfg, tmp_path / "g").run_all()
    m = RunDir(tmp_path / "g").manifest()
    assert m["status"] == "interrupted"
    assert {c["name"]: c["status"] for c in m["cells"]} == {
        "gsm8k": "completed", "gsm8k-sum": "derived", "gsm8k-random": "interrupted",
        "wiki_popularity": "pending"}
    partial = RunDir(tmp_path / "g" / "cells" / "gsm8k-random").read("spectra")
    assert len(partial) > 0
    monkeypatch.setattr(spectra_run, "run_spectra", real)
    results = Grid(cfg, tmp_path / "g").run_all()
    assert [r.status for r in results] == ["skipped", "derived", "completed", "completed"]
    assert results[2].already_done == partial[["source", "sample_id"]].drop_duplicates().shape[0]
    Grid(cfg, tmp_path / "fresh").run_all()
    for cell in ("gsm8k", "gsm8k-sum", "gsm8k-random", "wiki_popularity"):
        got, want = _table(tmp_path / "g" / "cells" / cell), \
            _table(tmp_path / "fresh" / "cells" / cell)
        assert not got.duplicated(KEY).any()
        pd.testing.assert_frame_equal(got[KEY], want[KEY])
        np.testing.assert_allclose(got[STATS].to_numpy(float), want[STATS].to_numpy(float),
                                   rtol=1e-5)


def test_the_derived_sum_cell_equals_a_measured_sum_run(tmp_path, model_dir, root):
    cfg = _cfg(model_dir, root, datasets=("gsm8k",), controls=("sum",), dtype="fp64")
    grid = Grid(cfg, tmp_path / "g")
    grid.run_all()
    cell = next(c for c in grid.cells if c.name == "gsm8k-sum")
    scfg = spectra_config(cfg, cell, grid.decision)
    assert scfg.loss_reduction == "sum"
    measured = RunDir.create(tmp_path / "measured", command="spectra")
    spectra_run.run_spectra(scfg, measured)
    got, want = _table(tmp_path / "g" / "cells" / "gsm8k-sum"), _table(tmp_path / "measured")
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got[KEY], want[KEY])
    assert (got["loss_reduction"] == "sum").all()
    for col in STATS:
        g, w = got[col].to_numpy(float), want[col].to_numpy(float)
        if col == "sigma_min":  # far below sigma_max it is QR rounding noise: compare there
            floor = SIGMA_FLOOR * want["sigma_max"].to_numpy(float)
            assert (np.abs(g - w) <= 1e-5 * np.abs(w) + floor).all(), col
        else:
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=0, err_msg=col)
    base = _table(tmp_path / "g" / "cells" / "gsm8k")
    assert not np.allclose(got[SCALED[0]], base[SCALED[0]])  # the control is not a copy
    s_got = _table(tmp_path / "g" / "cells" / "gsm8k-sum", "spectra_samples")
    s_want = _table(tmp_path / "measured", "spectra_samples")
    np.testing.assert_allclose(s_got["mean_nuclear"], s_want["mean_nuclear"], rtol=1e-5)
    identity = RunDir(tmp_path / "g" / "cells" / "gsm8k-sum").manifest()["identity"]
    assert identity["derived_from"] == "../gsm8k"  # `thoughtgrad spectra` cannot append to it


def test_changed_cell_settings_are_refused_before_any_work(tmp_path, model_dir, root):
    Grid(_cfg(model_dir, root, datasets=("gsm8k",), controls=()), tmp_path / "g").run_all()
    before = (tmp_path / "g" / "manifest.json").read_text()
    with pytest.raises(UserError, match="other settings"):
        Grid(_cfg(model_dir, root, datasets=("gsm8k",), controls=(), max_length=64),
             tmp_path / "g")
    assert (tmp_path / "g" / "manifest.json").read_text() == before


def test_instruct_or_base_and_the_chat_template():
    assert model_kind("pkg:smollm2-135m-instruct")[0] == "instruct"
    assert model_kind("pkg:gemma-3-270m")[0] == "base"
    assert model_kind("/m/SmolLM2-135M-Instruct.Q4_1.gguf")[0] == "instruct"
    assert model_kind("google/gemma-3-270m-it")[0] == "instruct"
    assert model_kind("google/gemma-3-270m")[0] == "base"
    assert model_kind("/x/llama")[0] == "base"

    class Tok:
        chat_template = "{{ messages }}"

    class Plain:
        chat_template = None

    inst = GridConfig(model="org/tiny-instruct")
    assert decide(inst, lambda: Tok()).chat_template is True
    assert decide(inst, lambda: Plain()).chat_template is False
    base = GridConfig(model="org/tiny")
    assert decide(base, lambda: Tok()).chat_template is False  # a base model: plain text
    forced = GridConfig(model="org/tiny", chat_template=True, model_kind="instruct")
    d = decide(forced, None)
    assert d.chat_template and d.kind == "instruct" and "as given" in d.reason


def test_bad_input_is_one_line(tmp_path, model_dir, root):
    with pytest.raises(UserError, match="no such folder"):
        Grid(_cfg(model_dir, tmp_path / "nowhere"), tmp_path / "g")
    (root / "cot_500" / "gsm8k_train_with_cot.json").unlink()
    with pytest.raises(UserError, match="gsm8k_train_with_cot.json: no such data file"):
        Grid(_cfg(model_dir, root), tmp_path / "g")
    assert not (tmp_path / "g").exists()
    with pytest.raises(UserError, match="unknown mmlu"):
        GridConfig(model="m", datasets=("mmlu",))
    with pytest.raises(UserError, match="unknown twice"):
        GridConfig(model="m", controls=("twice",))
