# SPDX-License-Identifier: MIT
"""``thoughtgrad compare`` and ``thoughtgrad report`` end to end on synthetic runs."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "report"))

from report_fixtures import make_run, make_spectra  # noqa: E402

from thoughtgrad.cli import main  # noqa: E402


def test_compare_and_report_cli(tmp_path: Path, capsys) -> None:
    runs = [str(make_run(tmp_path, k, {"spectra": make_spectra(k, n_samples=3,
                                                              roles=("q", "o"))}))
            for k in ("correct", "irrelevant")]
    out = tmp_path / "cmp"
    assert main(["compare", *runs, "--out", str(out), "--n-boot", "30",
                 "--metrics", "nuclear", "--per-loss"]) == 0
    text = capsys.readouterr().out
    assert "MAD of nuclear/loss" in text and "Separation of irrelevant" in text
    for name in ("spectra_mad", "separation", "spectra_curves", "spectra_reldiff"):
        for ext in ("csv", "md", "tex"):
            assert (out / f"{name}.{ext}").is_file()
    assert r"\toprule" in (out / "spectra_mad.tex").read_text()
    assert any((out / "figures").glob("*.png"))
    page = tmp_path / "r" / "page.html"
    assert main(["report", *runs, "--out", str(page), "--n-boot", "30",
                 "--metrics", "nuclear"]) == 0
    assert page.is_file() and "wrote" in capsys.readouterr().out


def test_report_page_defaults_to_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    run = make_run(tmp_path, "one", {"spectra": make_spectra("correct", n_samples=2,
                                                             roles=("q", "o"))})
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run), "--n-boot", "10"]) == 0
    assert (tmp_path / "report.html").is_file() and not (run / "report.html").exists()


def test_cli_bad_input_one_line(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "not a run directory" in err[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2  # nothing to report is an error, not a blank page
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run directory here" in err[0]
    assert not (empty / "report.html").exists()


def test_compare_of_a_missing_run_creates_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "X"
    assert main(["compare", str(tmp_path / "nope"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]
    assert not out.exists()


def test_analysis_options_come_from_compare_config() -> None:
    from thoughtgrad.cli import build_parser
    from thoughtgrad.cli.compare import config_from_args
    from thoughtgrad.report.compare import CompareConfig

    args = build_parser().parse_args(["compare", "r1", "--out", "o", "--metrics", "nuclear, ratio",
                                      "--per-loss", "--n-boot", "7", "--set", "level=0.9"])
    cfg = config_from_args(args)
    assert cfg == CompareConfig(metrics=("nuclear", "ratio"), per_loss=True, n_boot=7, level=0.9)
    assert config_from_args(build_parser().parse_args(["report", "r1"])) == CompareConfig()
