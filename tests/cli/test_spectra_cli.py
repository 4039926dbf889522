# SPDX-License-Identifier: MIT
"""``thoughtgrad spectra`` / ``thoughtgrad variants`` end to end: the shared gsm8k data on a
tiny random-init llama, resume, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from thoughtgrad.cli import main

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "layer_gradient"
LEVELS = {"gsm8k_train_no_cot": "none", "gsm8k_train_with_cot": "simplified",
          "gsm8k_train_with_cot_gpt4o": "detailed"}
N_MATRICES = 2 * 7


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory) -> Path:
    from thoughtgrad.models.tiny import DEFAULT_CORPUS, build_tokenizer, save_tiny

    texts = list(DEFAULT_CORPUS)
    for stem in LEVELS:
        f = SHARED / "cot_500" / f"{stem}.json"
        if f.is_file():
            texts += [r["instruction"] + "\n" + r["output"] for r in json.loads(f.read_text())[:20]]
    return save_tiny(tmp_path_factory.mktemp("llama"), "llama",
                     build_tokenizer(texts, vocab_size=1000))


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc: int, err: str) -> str:
    assert rc == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.skipif(not (SHARED / "cot_500").is_dir(),
                    reason=f"shared data absent: {SHARED} (the Layer_Gradient samples)")
def test_real_gsm8k_six_files_labels_and_resume(tmp_path, llama_dir, capsys):
    files = [SHARED / folder / f"{stem}.json" for folder in
             ("cot_500", "cot_500_wrong_answer_shuffle") for stem in LEVELS]
    out = tmp_path / "run"
    base = ["spectra", "--model", llama_dir, "--out", out, "--max-length", "300",
            "--batch-tokens", "1200"]
    for f in files:
        base += ["--data", f]
    rc, stdout, _ = _run([*base, "--limit", "2"], capsys)
    assert rc == 0 and "12 samples" in stdout
    first = pd.read_parquet(out / "spectra.parquet")
    assert len(first) == 12 * N_MATRICES
    rc, stdout, _ = _run([*base, "--limit", "3"], capsys)  # extends the run: resumes
    assert rc == 0 and "12 already done, 6 measured" in stdout
    df = pd.read_parquet(out / "spectra.parquet")
    assert len(df) == 18 * N_MATRICES
    assert not df.duplicated(["source", "sample_id", "layer", "role"]).any()
    assert df.groupby(["source", "sample_id"]).size().eq(N_MATRICES).all()
    assert set(df["role"]) == {"q", "k", "v", "o", "gate", "up", "down"}
    assert set(df["layer"]) == {0, 1}
    for (source, level, kind, cond), group in df.groupby(
            ["source", "cot_level", "response_kind", "condition"]):
        folder, stem = source.split("/")
        assert level == LEVELS[stem]
        assert kind == ("irrelevant" if "wrong_answer_shuffle" in folder else "correct")
        assert cond == f"{level}/{kind}"
        assert sorted(group["sample_id"].unique()) == [0, 1, 2]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["counts"]["samples"] == 18
    assert manifest["counts"]["done"] == 18 and manifest["counts"]["truncated"] > 0
    assert len(manifest["data_sha256"]) == 6
    rc, stdout, _ = _run([*base, "--limit", "3"], capsys)
    assert rc == 0 and "0 measured" in stdout
    assert len(pd.read_parquet(out / "spectra.parquet")) == 18 * N_MATRICES


def _write(path: Path, rows) -> Path:
    path.write_text(json.dumps(rows))
    return path


GOOD = [{"instruction": f"What is {i} + 1?", "input": "", "output": f"{i} + 1 = {i + 1}.\n"
         f"The final answer is {i + 1}"} for i in range(3)]


def test_bad_records_are_one_line_errors_and_earlier_results_remain(tmp_path, llama_dir, capsys):
    data = _write(tmp_path / "d.json", [*GOOD[:2], {"instruction": "x", "input": ""}, GOOD[2]])
    out = tmp_path / "run"
    args = ["spectra", "--model", llama_dir, "--data", data, "--out", out]
    assert _run([*args, "--limit", "2"], capsys)[0] == 0
    rc, _, err = _run([*args, "--limit", "4"], capsys)
    line = _one_line_error(rc, err)
    assert str(data) in line and "record 2" in line and "'output'" in line
    assert len(pd.read_parquet(out / "spectra.parquet")) == 2 * N_MATRICES  # kept
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"

    empty = _write(tmp_path / "e.json", [GOOD[0], {"instruction": "x", "output": ""}])
    rc, _, err = _run(["spectra", "--model", llama_dir, "--data", empty, "--out",
                       tmp_path / "r2"], capsys)
    line = _one_line_error(rc, err)
    assert str(empty) in line and "record 1" in line and "empty response" in line

    bad = tmp_path / "b.jsonl"
    bad.write_text(json.dumps(GOOD[0]) + "\n" + json.dumps(GOOD[1])[:-3] + "\n")
    rc, _, err = _run(["spectra", "--model", llama_dir, "--data", bad, "--out",
                       tmp_path / "r3"], capsys)
    line = _one_line_error(rc, err)
    assert str(bad) in line and "invalid JSON on line 2" in line


def test_model_errors_are_one_line(tmp_path, llama_dir, capsys):
    import shutil

    data = _write(tmp_path / "d.json", GOOD)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(llama_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    rc, _, err = _run(["spectra", "--model", no_weights, "--data", data, "--out",
                       tmp_path / "r1"], capsys)
    line = _one_line_error(rc, err)
    assert str(no_weights) in line and "no weights" in line

    from transformers import OPTConfig, OPTForCausalLM

    from thoughtgrad.models.tiny import build_tokenizer

    opt_dir = tmp_path / "opt"
    tok = build_tokenizer()
    OPTForCausalLM(OPTConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                             ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=16,
                             max_position_embeddings=128)).save_pretrained(opt_dir)
    tok.save_pretrained(opt_dir)
    rc, _, err = _run(["spectra", "--model", opt_dir, "--data", data, "--out",
                       tmp_path / "r2"], capsys)
    line = _one_line_error(rc, err)
    assert str(opt_dir) in line and "no role table for architecture 'opt'" in line
    assert "q_proj" in line and "register_architecture" in line


def test_changed_settings_are_refused_without_touching_the_run(tmp_path, llama_dir, capsys):
    data = _write(tmp_path / "d.json", GOOD)
    out = tmp_path / "run"
    assert _run(["spectra", "--model", llama_dir, "--data", data, "--out", out], capsys)[0] == 0
    before = json.loads((out / "manifest.json").read_text())
    rc, _, err = _run(["spectra", "--model", llama_dir, "--data", data, "--out", out,
                       "--loss-span", "answer"], capsys)
    assert "use a new --out" in _one_line_error(rc, err)
    assert json.loads((out / "manifest.json").read_text()) == before


def test_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["spectra", "--help"])
    text = capsys.readouterr().out
    for opt in ("--model", "--data", "--out", "--roles", "--batch-tokens", "--max-length",
                "--dtype", "--device", "--method", "--limit", "--chat-template",
                "--trust-remote-code", "--condition", "--prompt-field", "--response-field",
                "--loss-reduction", "--loss-span", "--answer-pattern", "--init", "--seed",
                "--include-fused", "--attn-implementation"):
        assert opt in text
    roles_help = " ".join(text.split("  --roles ROLES", 1)[1].split("--method", 1)[0].split())
    assert "qkv,gate_up" in roles_help


def test_progress_lines_without_a_terminal_and_sdpa(tmp_path, llama_dir, capsys):
    rows = [dict(GOOD[i % 3], instruction=f"What is {i} + 1?") for i in range(20)]
    data = _write(tmp_path / "d.json", rows)
    rc, _, err = _run(["spectra", "--model", llama_dir, "--data", data, "--out",
                       tmp_path / "run", "--batch-tokens", "40", "--attn-implementation",
                       "sdpa"], capsys)
    assert rc == 0
    lines = [ln for ln in err.splitlines() if ln.startswith("spectra: ")]
    assert lines[0] == "spectra: 20 samples to measure"
    assert lines[-1].startswith("spectra: 20/20 samples (100%")
    assert 3 <= len(lines) <= 12  # about one line per tenth, never one per batch only
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["config"]["attn_implementation"] == "sdpa"


def test_a_run_that_measures_nothing_exits_2_and_keeps_its_failures(tmp_path, llama_dir,
                                                                      capsys):
    data = _write(tmp_path / "d.json", GOOD)
    out = tmp_path / "run"
    rc, stdout, err = _run(["spectra", "--model", llama_dir, "--data", data, "--out", out,
                            "--max-length", "3"], capsys)
    line = _one_line_error(rc, err)
    assert "no sample could be measured (3 failed; first: the prompt alone has" in line
    assert "completed" not in stdout and not (out / "spectra.parquet").exists()
    assert len(pd.read_parquet(out / "spectra_failed.parquet")) == 3
    assert json.loads((out / "manifest.json").read_text())["status"] == "failed"


def test_variants_all_writes_labelled_files(tmp_path, capsys):
    from thoughtgrad.tasks.records import load_many

    data = _write(tmp_path / "apples_with_cot.json", GOOD)
    rc, stdout, _ = _run(["variants", "--data", data, "--all", "--out-dir", tmp_path / "v",
                          "--seed", "1"], capsys)
    assert rc == 0
    files = sorted((tmp_path / "v").glob("*.json"))
    assert len(files) == 6
    recs = load_many(files)
    got = {(r.labels.cot_level, r.labels.response_kind) for r in recs}
    assert got == {("none", "correct"), ("simplified", "correct"), ("detailed", "correct"),
                   ("half_steps", "correct"), ("simplified", "irrelevant"),
                   ("simplified", "corrupted")}
    none = json.loads((tmp_path / "v" / "apples_with_cot_none.json").read_text())
    assert [r["output"] for r in none] == ["1", "2", "3"]
    rc, _, err = _run(["variants", "--data", data, "--kind", "corrupted"], capsys)
    assert "give --out FILE" in _one_line_error(rc, err)
