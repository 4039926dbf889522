# SPDX-License-Identifier: MIT
"""``thoughtgrad grid`` then ``thoughtgrad report`` through the real CLI on a tiny random-init
llama and a tiny data root: progress per cell, resume, the report's claims section, the
spectra sum note and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from thoughtgrad.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
from grid_fixtures import write_data_root  # noqa: E402


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    from thoughtgrad.models.tiny import build_tokenizer, save_tiny

    return save_tiny(tmp_path_factory.mktemp("llama"), "llama", build_tokenizer(vocab_size=300))


def _run(argv: list[object], capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_grid_then_report_with_the_claims_section(tmp_path, llama_dir, capsys):
    root = write_data_root(tmp_path / "layer_gradient", datasets=("gsm8k",))
    out = tmp_path / "grid"
    argv = ["grid", "--model", llama_dir, "--out", out, "--data-root", root, "--device", "cpu",
            "--datasets", "gsm8k", "--controls", "sum", "--limit", "3"]
    rc, stdout, err = _run(argv, capsys)
    assert rc == 0, err
    lines = [ln for ln in err.splitlines() if ln.startswith("grid [")]
    assert [ln.split(":")[0] for ln in lines] == [  # a line as each cell starts and ends
        "grid [1/2] gsm8k", "grid [1/2] gsm8k", "grid [2/2] gsm8k-sum", "grid [2/2] gsm8k-sum"]
    assert "1 derived, 0 failed" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "grid" and manifest["model_kind"] == "base"
    assert [c["status"] for c in manifest["cells"]] == ["completed", "derived"]

    rc, stdout, err = _run(argv, capsys)  # the same command again: nothing is measured
    assert rc == 0 and "1 already complete, 0 measured" in stdout, err

    rc, stdout, err = _run(["report", out, "--metrics", "nuclear", "--n-boot", "200",
                            "--out", out / "report.html"], capsys)
    assert rc == 0, err
    page = (out / "report.html").read_text()
    assert page.index('id="claims"') < page.index('id="notes"')  # the report opens with it
    assert "Claims across the five seeds" in page and 'href="#claims-spectra"' in page
    assert "holds only with the mean loss" in page or "does not hold" in page
    assert "not measured in these runs" in page  # no dynamics, toy or scale runs here
    assert page.count("n=3") > 0  # figures carry their n
    assert "gsm8k-sum" in page  # every cell is read


def test_spectra_sum_says_it_is_derivable(tmp_path, llama_dir, capsys):
    root = write_data_root(tmp_path / "layer_gradient", datasets=("gsm8k",))
    rc, _, err = _run(["spectra", "--model", llama_dir, "--data",
                       root / "cot_500" / "gsm8k_train_no_cot.json", "--out", tmp_path / "s",
                       "--limit", "1", "--loss-reduction", "sum", "--device", "cpu"], capsys)
    assert rc == 0
    assert sum("sum control needs no measurement" in ln for ln in err.splitlines()) == 1


def test_bad_input_is_one_line(tmp_path, llama_dir, capsys):
    rc, _, err = _run(["grid", "--model", llama_dir, "--out", tmp_path / "g", "--data-root",
                       tmp_path / "nowhere"], capsys)
    assert rc == 2 and "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        f"error: data root {tmp_path / 'nowhere'}: no such folder (give --data-root, laid out "
        "like ../shared/data/layer_gradient)"]
    rc, _, err = _run(["grid", "--model", llama_dir, "--out", tmp_path / "g", "--datasets",
                       "mmlu"], capsys)
    assert rc == 2 and "unknown mmlu" in err
    assert not (tmp_path / "g").exists()
