# SPDX-License-Identifier: MIT
"""run_spectra on a tiny random-init llama: rows and labels, agreement with a direct
per-sample computation, resume after an interruption, retries, failures retried on resume,
an all-failed run, truncation and the confound controls."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from spectra_fixtures import COT, QUESTIONS

from thoughtgrad.errors import UserError
from thoughtgrad.experiments.spectra_config import SpectraConfig
from thoughtgrad.experiments.spectra_run import run_spectra
from thoughtgrad.experiments.spectra_tables import COLUMNS
from thoughtgrad.report.compare import open_failures
from thoughtgrad.runs.store import RunDir
from thoughtgrad.tasks.encode import EncodeConfig, encode

STATS = ["nuclear", "sigma_max", "ratio", "frobenius", "effective_rank", "loss"]
N_MATRICES = 2 * 7  # tiny llama: 2 layers x q k v o gate up down


def _cfg(model_dir, data, **kw) -> SpectraConfig:
    return SpectraConfig(model=str(model_dir), data=tuple(map(str, data)), device="cpu", **kw)


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(["source", "sample_id", "layer", "role"]).reset_index(drop=True)


def test_rows_labels_and_agreement_with_a_per_sample_reference(tmp_path, model_dir, data):
    run = RunDir.create(tmp_path / "run", command="spectra")
    summary = run_spectra(_cfg(model_dir, data, batch_tokens=200), run)
    df = run.read("spectra")
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 12 * N_MATRICES and summary.rows == len(df) and summary.computed == 12
    assert not df.duplicated(["source", "sample_id", "layer", "role"]).any()
    assert set(df.groupby(["source", "condition", "cot_level", "response_kind"]).size().index) \
        == {("apples_no_cot", "none/correct", "none", "correct"),
            ("apples_with_cot", "simplified/correct", "simplified", "correct")}
    assert (df["init"] == "pretrained").all() and (df["loss_span"] == "response").all()
    assert run.manifest()["counts"] == {"samples": 12, "done": 12, "failed": 0, "truncated": 0}

    # Independent check of batching, padding and label mapping: one sample at a time,
    # the slow per-sample full-SVD reference on the same encoding.
    from thoughtgrad.models.hf import load_model, load_tokenizer
    from thoughtgrad.spectra import layer_spectra

    model, tok = load_model(model_dir, device="cpu"), load_tokenizer(model_dir)
    for i in (1, 4):
        enc = encode(tok, QUESTIONS[i], COT[i], EncodeConfig())
        ref = layer_spectra(model, torch.tensor([enc.input_ids]), torch.tensor([enc.labels]),
                            method="reference")
        got = _sorted(df[(df.source == "apples_with_cot") & (df.sample_id == i)])
        ref = ref.sort_values(["layer", "role"]).reset_index(drop=True)
        assert (got["n_tokens"] == enc.n_loss_tokens).all()
        np.testing.assert_allclose(got[STATS].to_numpy(), ref[STATS].to_numpy(), rtol=1e-4)


def test_interrupted_run_resumes_with_the_same_rows_none_twice(tmp_path, model_dir, data):
    cfg = _cfg(model_dir, data, batch_tokens=120)
    run = RunDir.create(tmp_path / "run", command="spectra")
    calls = []

    def kill_after_first_shard(n: int) -> None:
        calls.append(n)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_spectra(cfg, run, progress=kill_after_first_shard)
    partial = run.read("spectra")
    assert 0 < len(partial) < 12 * N_MATRICES
    summary = run_spectra(cfg, run)
    assert summary.already_done == len(partial) // N_MATRICES
    resumed = run.read("spectra")
    assert not resumed.duplicated(["source", "sample_id", "layer", "role"]).any()
    fresh_run = RunDir.create(tmp_path / "fresh", command="spectra")
    run_spectra(cfg, fresh_run)
    fresh = fresh_run.read("spectra")
    a, b = _sorted(resumed), _sorted(fresh)
    pd.testing.assert_frame_equal(a.drop(columns=STATS), b.drop(columns=STATS))
    np.testing.assert_allclose(a[STATS].to_numpy(), b[STATS].to_numpy(), rtol=1e-5)
    assert run_spectra(cfg, run).computed == 0  # nothing left


def test_limit_extends_a_run_and_other_settings_are_refused(tmp_path, model_dir, data):
    run = RunDir.create(tmp_path / "run", command="spectra")
    run_spectra(_cfg(model_dir, data, limit=2), run)
    assert len(run.read("spectra")) == 4 * N_MATRICES
    s = run_spectra(_cfg(model_dir, data, limit=3, batch_tokens=64), run)
    assert (s.already_done, s.computed) == (4, 2)
    assert len(run.read("spectra")) == 6 * N_MATRICES
    with pytest.raises(UserError, match=r"other settings \(loss_reduction: 'mean' -> 'sum'\); "
                                        r"use a new --out"):
        run_spectra(_cfg(model_dir, data, limit=3, loss_reduction="sum"), run)
    assert len(run.read("spectra")) == 6 * N_MATRICES


def test_a_run_made_before_the_shared_identity_is_still_checked(tmp_path, model_dir, data):
    run = RunDir.create(tmp_path / "run", command="spectra")
    cfg = _cfg(model_dir, data, limit=1)
    run.update_manifest(spectra_identity=cfg.identity())  # the old manifest key only
    with pytest.raises(UserError, match=r"init: 'pretrained' -> 'random'"):
        run_spectra(_cfg(model_dir, data, limit=1, init="random"), run)
    assert not run.has_table("spectra")
    assert run_spectra(cfg, run).computed == 2
    assert "identity" in run.manifest()


def test_model_column_is_the_resolved_directory(tmp_path, model_dir, data, monkeypatch):
    monkeypatch.chdir(model_dir.parent)
    run = RunDir.create(tmp_path / "run", command="spectra")
    rel = SpectraConfig(model=f"./{model_dir.name}", data=tuple(map(str, data)), device="cpu",
                        limit=1)
    run_spectra(rel, run)
    df = run.read("spectra")
    assert set(df["model"]) == {str(model_dir.resolve())}
    assert run.manifest()["model"] == str(model_dir.resolve())
    same = SpectraConfig(model=model_dir.name, data=tuple(map(str, data)), device="cpu", limit=1)
    assert run_spectra(same, run).computed == 0  # the same model: resumed, not refused


def test_a_failing_batch_is_retried_per_sample(tmp_path, model_dir, data, monkeypatch):
    import thoughtgrad.spectra as spectra

    real = spectra.layer_spectra
    poison = 7  # the no_cot answer of record 2 (2 * 2 + 3); no other answer holds a 7

    def flaky(model, input_ids, labels, attention_mask=None, **kw):
        if (labels == poison_id).any():
            raise RuntimeError("CUDA out of memory (simulated)\nsecond line")
        return real(model, input_ids, labels, attention_mask, **kw)

    from thoughtgrad.models.hf import load_tokenizer

    tok = load_tokenizer(model_dir)
    poison_id = encode(tok, QUESTIONS[2], str(poison), EncodeConfig()).labels[-1]
    monkeypatch.setattr(spectra, "layer_spectra", flaky)
    run = RunDir.create(tmp_path / "run", command="spectra")
    summary = run_spectra(_cfg(model_dir, data[:1], batch_tokens=10_000), run)
    failed = run.read("spectra_failed")
    assert failed["sample_id"].tolist() == [2] and summary.failed == 1
    assert failed["reason"].iloc[0] == "RuntimeError: CUDA out of memory (simulated)"
    assert sorted(run.read("spectra")["sample_id"].unique()) == [0, 1, 3, 4, 5]
    assert run.manifest()["counts"]["failed"] == 1
    # Resume: the failed sample is tried again; once measured its failure is resolved.
    monkeypatch.setattr(spectra, "layer_spectra", real)
    again = run_spectra(_cfg(model_dir, data[:1], batch_tokens=10_000), run)
    assert (again.computed, again.failed, again.already_done) == (1, 0, 5)
    assert sorted(run.read("spectra")["sample_id"].unique()) == list(range(6))
    measured = {("apples_no_cot", i) for i in range(6)}
    assert open_failures(run.read("spectra_failed"), measured).empty
    assert run.manifest()["counts"] == {"samples": 6, "done": 6, "failed": 0, "truncated": 0}
    assert run_spectra(_cfg(model_dir, data[:1], batch_tokens=10_000), run).computed == 0


def test_a_run_that_measures_nothing_is_an_error_and_keeps_its_failures(
        tmp_path, model_dir, data, monkeypatch):
    import thoughtgrad.spectra as spectra

    def broken(*args, **kw):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(spectra, "layer_spectra", broken)
    run = RunDir.create(tmp_path / "run", command="spectra")
    with pytest.raises(UserError, match=r"no sample could be measured \(6 failed; first: "
                                        r"RuntimeError: CUDA out of memory"):
        run_spectra(_cfg(model_dir, data[:1]), run)
    assert not run.has_table("spectra")
    assert len(run.read("spectra_failed")) == 6
    with pytest.raises(UserError, match="no sample could be measured"):  # resume: retried
        run_spectra(_cfg(model_dir, data[:1]), run)
    assert len(run.read("spectra_failed")) == 6  # the same reasons are not recorded twice


def test_truncation_count_and_prompt_too_long(tmp_path, model_dir, data):
    from thoughtgrad.models.hf import load_tokenizer

    tok = load_tokenizer(model_dir)
    lengths = [len(encode(tok, q, c, EncodeConfig())) for q, c in zip(QUESTIONS, COT,
                                                                        strict=True)]
    n_prompt = [encode(tok, q, c, EncodeConfig()).n_prompt for q, c in zip(QUESTIONS, COT,
                                                                            strict=True)]
    cut = max(n_prompt) + 3
    run = RunDir.create(tmp_path / "run", command="spectra")
    run_spectra(_cfg(model_dir, data[1:], max_length=cut), run)
    expect = sum(n > cut for n in lengths)
    assert run.manifest()["counts"]["truncated"] == expect > 0
    assert run.read("spectra_samples")["truncated"].sum() == expect
    summary = run_spectra(_cfg(model_dir, data[1:], max_length=cut), run)  # nothing left
    assert summary.computed == 0 and run.manifest()["counts"]["truncated"] == expect
    df = run.read("spectra")
    for i, (n, p) in enumerate(zip(lengths, n_prompt, strict=True)):
        assert (df[df.sample_id == i]["n_tokens"] == min(n, cut) - p).all()

    tight = min(n_prompt)
    run2 = RunDir.create(tmp_path / "run2", command="spectra")
    with pytest.raises(UserError, match="no sample could be measured.*prompt alone has"):
        run_spectra(_cfg(model_dir, data[1:], max_length=tight), run2)
    failed = run2.read("spectra_failed")
    assert len(failed) == 6 and failed["reason"].str.contains("prompt alone has").all()
    assert not run2.has_table("spectra")


def test_controls_sum_reduction_answer_span_random_init(tmp_path, model_dir, data):
    base_run = RunDir.create(tmp_path / "mean", command="spectra")
    run_spectra(_cfg(model_dir, data[1:], limit=2), base_run)
    base = _sorted(base_run.read("spectra"))
    sum_run = RunDir.create(tmp_path / "sum", command="spectra")
    run_spectra(_cfg(model_dir, data[1:], limit=2, loss_reduction="sum"), sum_run)
    summed = _sorted(sum_run.read("spectra"))
    # A sum over n tokens is n times the mean: every singular value scales by n.
    np.testing.assert_allclose(summed["nuclear"], base["nuclear"] * base["n_tokens"], rtol=1e-4)
    np.testing.assert_allclose(summed["ratio"], base["ratio"], rtol=1e-4)
    assert (summed["loss_reduction"] == "sum").all()

    ans_run = RunDir.create(tmp_path / "ans", command="spectra")
    run_spectra(_cfg(model_dir, data[1:], limit=2, loss_span="answer"), ans_run)
    ans = _sorted(ans_run.read("spectra"))
    assert (ans["n_tokens"] < base["n_tokens"]).all() and (ans["loss_span"] == "answer").all()
    texts = ans_run.read("spectra_samples").sort_values("sample_id")["answer"].tolist()
    assert texts == ["3", "5"]  # 2 * i + 3: the answer's own tokens carry the loss
    assert base_run.read("spectra_samples")["answer"].isna().all()

    r1, r2, r3 = (RunDir.create(tmp_path / f"rand{i}", command="spectra") for i in range(3))
    run_spectra(_cfg(model_dir, data[1:], limit=2, init="random", seed=5), r1)
    run_spectra(_cfg(model_dir, data[1:], limit=2, init="random", seed=5), r2)
    run_spectra(_cfg(model_dir, data[1:], limit=2, init="random", seed=6), r3)
    a, b, c = (_sorted(r.read("spectra")) for r in (r1, r2, r3))
    np.testing.assert_allclose(a["nuclear"], b["nuclear"], rtol=1e-6)
    assert not np.allclose(a["nuclear"], base["nuclear"], rtol=1e-2)
    assert not np.allclose(a["nuclear"], c["nuclear"], rtol=1e-2)
    assert (a["init"] == "random").all()
    assert set(a["init_seed"]) == {5} and set(c["init_seed"]) == {6}
    assert base["init_seed"].isna().all()


def test_random_init_keeps_the_device_map(tmp_path):
    """--init random on a dispatched model (accelerate's hooks, forced on an all-CPU map):
    the same fresh weights as on one device, dispatched by the same map (accelerate
    attaches hooks only for a map of several devices)."""
    from accelerate import dispatch_model

    from thoughtgrad.experiments.spectra_run import reinitialise
    from thoughtgrad.models.tiny import tiny_model

    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu",
                  "model.layers.0": "cpu", "model.layers.1": "cpu", "model.norm": "cpu"}
    placed = dispatch_model(tiny_model("llama", vocab_size=64), device_map=device_map,
                            force_hooks=True)
    fresh = reinitialise(placed, seed=5)
    plain = reinitialise(tiny_model("llama", vocab_size=64), seed=5)
    assert fresh.hf_device_map == device_map and not fresh.training
    for (name, p), (_, q) in zip(fresh.named_parameters(), plain.named_parameters(),
                                 strict=True):
        assert p.device == torch.device("cpu") and torch.equal(p, q), name
