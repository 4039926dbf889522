# SPDX-License-Identifier: MIT
"""report.html: offline, escaped, tolerant of bad input; a hostile record goes from a
real data file through ``thoughtgrad spectra`` and ``thoughtgrad report``."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import (
    HOSTILE,
    XSS,
    XSS_ESCAPED,
    make_run,
    make_spectra,
    make_toy_tables,
    real_spectra_run,
)

from thoughtgrad.cli import main
from thoughtgrad.report.compare import CompareConfig
from thoughtgrad.report.html import write_report

CFG = CompareConfig(n_boot=50)


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    return real_spectra_run(tmp_path_factory.mktemp("xss"))


def xss_runs(root: Path) -> list[Path]:
    """A correct and an irrelevant run whose labels and failures quote a hostile instruction."""
    good = make_spectra("correct", n_samples=3, roles=("q", "k", "v", "o"))
    bad = make_spectra("irrelevant", n_samples=3, roles=("q", "k", "v", "o"))
    bad["condition"] = bad["cot_level"] + f"/{XSS}"  # a user label that is not redundant
    failed = pd.DataFrame({"sample_id": [7], "source": [f"gsm8k_{XSS}"],
                           "reason": [f"record 7: instruction '{XSS} solve 2+2' fills max_length"]})
    return [make_run(root, "correct", {"spectra": good, **make_toy_tables()}),
            make_run(root, f"irrelevant{XSS}".replace("/", "_"),
                     {"spectra": bad, "spectra_failed": failed}, data=f"{XSS}.json")]


def test_a_hostile_record_reaches_the_report_escaped(tmp_path: Path, real_run: Path,
                                                     capsys) -> None:
    samples = pd.read_parquet(real_run / "spectra_samples.parquet")
    assert samples["prompt"].str.startswith(XSS).sum() == 2  # both CoT levels of record 0
    page_path = tmp_path / "report.html"
    assert main(["report", str(real_run), "--out", str(page_path), "--n-boot", "30"]) == 0
    capsys.readouterr()
    page = page_path.read_text(encoding="utf-8")
    assert XSS not in page and "<script>alert" not in page  # never raw
    assert f"{XSS_ESCAPED} Tom has 3 apples" in page  # the record's own text, escaped
    assert 'id="samples"' in page and "Samples whose gradients hit hardest" in page
    section = page.split('id="samples"', 1)[1].split("<h2", 1)[0]
    for cond in ("none/correct", "simplified/correct"):
        assert cond in section
    assert len(re.findall(r"<script>", page)) == 1 and "tgSerialBudget" in page
    assert HOSTILE.split(XSS, 1)[1].strip() in page


def test_report_is_offline_escaped_and_complete(tmp_path: Path, real_run: Path) -> None:
    runs = [real_run, *xss_runs(tmp_path)]
    out, comp = write_report(runs, tmp_path / "rep" / "report.html", CFG)
    page = out.read_text(encoding="utf-8")
    assert XSS not in page  # never raw
    assert XSS_ESCAPED in page
    # every <script> on the page is the simulator's own
    assert len(re.findall(r"<script>", page)) == 1 and "tgSerialBudget" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing from the network
    assert page.count("data:image/png;base64,") >= 6
    for section in ('id="spectra"', 'id="separation"', 'id="samples"', 'id="toy"',
                    'id="simulator"', 'id="dynamics"', 'id="surprisal"', 'id="scale"',
                    'id="runs"'):
        assert section in page, section
    assert "MAD between adjacent layers" in page and "AUROC" in page
    assert "Accuracy (fraction) per K of each knob" in page
    assert "tiny-llama" in page  # manifest: model
    assert (tmp_path / "rep" / "figures").is_dir()
    assert any(p.suffix == ".pdf" for p in (tmp_path / "rep" / "figures").iterdir())
    assert {"top_samples", "scale_by_k"} <= set(comp.tables)


def test_report_on_bad_input_still_written(tmp_path: Path) -> None:
    empty = make_run(tmp_path, "empty", {})
    old = make_run(tmp_path, "old", {"spectra": pd.DataFrame(
        {"sample_id": [0], "layer": [0], "role": ["q"]})})  # no metric columns
    out, comp = write_report([empty, old], tmp_path / "r.html", CFG)
    page = out.read_text(encoding="utf-8")
    assert "no tables found" in page
    assert "none of the requested metrics" in page
    assert 'id="simulator"' in page  # what can be shown is shown
    assert not (tmp_path / "figures").exists() or not any((tmp_path / "figures").glob("spectra*"))


def test_single_run_default_output(tmp_path: Path) -> None:
    run = make_run(tmp_path, "one", {"spectra": make_spectra("correct", n_samples=1,
                                                             roles=("q", "o"))})
    out, comp = write_report([run], None, CFG)
    assert out == run / "report.html" and out.is_file()
    assert any("single sample" in n for n in comp.notes)
    assert "single sample" in out.read_text(encoding="utf-8")
