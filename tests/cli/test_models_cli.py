# SPDX-License-Identifier: MIT
"""`thoughtgrad models`: the packaged models listed (installed, cached, sizes); one-line errors."""

from __future__ import annotations

import json

from thoughtgrad.cli import main
from thoughtgrad.models import cache, packaged


def test_lists_packaged_models_as_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    assert main(["models", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in table] == ["pkg:smollm2-135m-instruct", "pkg:gemma-3-270m"]
    smol, gemma = table
    assert smol["model"] == "SmolLM2-135M-Instruct (Q4_1 dequantised)"
    assert gemma["model"] == "Gemma-3-270M base (Q4_K_M dequantised)"
    assert smol["license"] == "Apache-2.0" and gemma["license"].startswith("Gemma terms")
    for row in table:
        assert row["cached"] is False and row["cache_bytes"] is None
        assert row["installed"] == packaged.installed(packaged.lookup(row["name"]))
        assert (row["package_bytes"] is not None) == row["installed"]


def test_table_says_how_to_install_a_missing_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    spec = packaged.PACKAGED["gemma-3-270m"]
    monkeypatch.setitem(packaged.PACKAGED, "gemma-3-270m",
                        packaged.PackagedModel(**{**spec.__dict__, "module": "no_such_mod"}))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["name", "model", "license", "installed", "cached",
                                           "package", "cache"]
    assert f"install pkg:gemma-3-270m: {spec.pip}" in out
    assert f"cache: {tmp_path / 'models'}" in out


def test_prepare_unknown_name_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path))
    assert main(["models", "--prepare", "llama-70b"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: model pkg:llama-70b: no such packaged model; known: ")
    assert "\n" not in err
