# SPDX-License-Identifier: MIT
"""thoughtgrad train / hessian / surprisal end to end on tiny models (toy and HF paths)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from thoughtgrad.cli import main
from thoughtgrad.dynamics.attention import math_attention
from thoughtgrad.dynamics.hessian import top_eigenvalues
from thoughtgrad.models.gpt_mini import GPTMini
from thoughtgrad.tasks.toy import TOKENIZER

GSM8K = Path(__file__).resolve().parents[2] / \
    "../shared/data/layer_gradient/cot_500/gsm8k_train_with_cot_gpt4o.json"



def toy_train(base: Path, out: Path, regime: str, steps: int, *extra: str) -> int:
    return main(["train", "--model", str(base), "--data", "toy:addition", "--regime", regime,
                 "--steps", str(steps), "--out", str(out), "--batch-size", "8",
                 "--checkpoint-every", "2", "--curvature-every", "2",
                 "--curvature-max-iter", "8", "--limit", "64", *extra])


def test_train_toy_regimes_resume_and_tables(toy_base, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert toy_train(toy_base, out, "cot", 5) == 0
    assert toy_train(toy_base, out, "half", 5) == 0  # a second regime in the same dir
    assert toy_train(toy_base, out, "cot", 5) == 0  # the same command: resumes, no new rows
    text = capsys.readouterr().out
    assert "training dynamics per regime" in text and "seed 000's claims" in text
    df = pd.read_parquet(out / "dynamics.parquet")
    assert sorted(df[df.regime == "cot"].step) == list(range(5))
    assert sorted(df[df.regime == "half"].step) == list(range(5))
    assert (df.status == "ok").all()
    assert df.loss_answer.notna().all() and df.grad_norm_answer.notna().all()
    assert df.groupby("regime").cos_prev_answer.apply(lambda s: s.iloc[1:].notna().all()).all()
    assert set(df.spike_source) == {"pre_clip"}
    probed = df[(df.regime == "cot") & df.lambda_max.notna()].step.tolist()
    assert sorted(probed) == [0, 2, 4]
    lay = pd.read_parquet(out / "layer_grad_norms.parquet")
    assert set(lay.layer) == {-1, 0}
    assert (out / "model-cot" / "model.safetensors").is_file()
    # the half regime drops a seeded half of the steps: shorter responses than cot
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dynamics_half"]["samples"] == manifest["dynamics_cot"]["samples"] == 64


def test_hessian_json_matches_api(toy_base, tmp_path, capsys) -> None:
    rc = main(["hessian", "--model", str(toy_base), "--data", "toy:addition", "--limit", "4",
               "--top-k", "2", "--json", "--trace-samples", "3", "--max-iter", "60",
               "--tol", "1e-8", "--out", str(tmp_path / "h")])
    assert rc == 0
    obj = json.loads(capsys.readouterr().out)
    assert set(obj) == {"eigenvalues", "trace", "hvps", "converged"}
    assert len(obj["eigenvalues"]) == 2 and obj["hvps"] > 3
    # independent: the same loss built here, solved by power iteration on H + 50 I
    from thoughtgrad.dynamics.hessian import hvp_operator, power_iteration
    from thoughtgrad.experiments.dynamics_data import probe_batches, toy_examples
    from thoughtgrad.train.sft import lm_loss

    model = GPTMini.load(toy_base)
    batch, _ = probe_batches(toy_examples(str(toy_base), "addition", "cot", seed=0, limit=4),
                             4, TOKENIZER.pad_id)
    params = list(model.parameters())
    with math_attention():
        op = hvp_operator(lambda: lm_loss(model(batch.input_ids).logits, batch.labels), params)
        ref = power_iteration(lambda v: [h + 50.0 * x for h, x in zip(op(v), v, strict=True)],
                              params, tol=1e-9, max_iter=3000)
        lz = top_eigenvalues(lambda: lm_loss(model(batch.input_ids).logits, batch.labels), params,
                             k=2, tol=1e-8, max_iter=60)
    assert obj["eigenvalues"][0] == pytest.approx(ref.eigenvalues[0] - 50.0, rel=1e-3)
    assert obj["eigenvalues"] == pytest.approx(lz.eigenvalues, rel=1e-6)
    table = pd.read_parquet(tmp_path / "h" / "hessian.parquet")  # a run directory too
    assert list(table.layer) == ["all"]
    assert list(table[["lambda_1", "lambda_2"]].iloc[0]) == pytest.approx(obj["eigenvalues"])
    assert json.loads((tmp_path / "h" / "manifest.json").read_text())["status"] == "completed"


def test_surprisal_cli_tables(toy_base, tmp_path, capsys) -> None:
    out = tmp_path / "surp"
    assert main(["surprisal", "--model", str(toy_base), "--data", "toy:addition", "--limit",
                 "6", "--out", str(out), "--regime", "half", "--tau", "0.9"]) == 0
    tok = pd.read_parquet(out / "surprisal.parquet")
    per = pd.read_parquet(out / "surprisal_samples.parquet")
    assert list(tok.columns[:7]) == ["sample_id", "condition", "position", "token_id",
                                     "surprisal_bits", "p_true", "logit_grad_norm"]
    assert tok.lemma2_ok.all() and (per.lemma2_violations == 0).all()
    assert len(per) == 6 and set(tok.condition) == {"half"}
    # oracle: one sample's surprisal by a hand log-softmax over the model's logits
    model = GPTMini.load(toy_base)
    sid = int(tok.sample_id.iloc[0])
    rows = tok[tok.sample_id == sid]
    from thoughtgrad.experiments.dynamics_data import toy_examples

    ex = [e for e in toy_examples(str(toy_base), "addition", "half", seed=0, limit=6)
          if e.sample_id == sid][0]
    ids = torch.tensor([ex.full.input_ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    want = [float(-logp[p - 1, ex.full.input_ids[p]] / torch.log(torch.tensor(2.0)))
            for p in rows.position]
    assert rows.surprisal_bits.tolist() == pytest.approx(want, rel=1e-4)


def test_bad_input_is_one_line(toy_base, tmp_path, capsys) -> None:
    rc = main(["train", "--model", str(tmp_path / "missing"), "--data", "toy:addition",
               "--regime", "cot", "--steps", "2", "--out", str(tmp_path / "r")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    rc = main(["train", "--model", str(toy_base), "--data", "toy:nosuchtask",
               "--regime", "cot", "--steps", "2", "--out", str(tmp_path / "r2")])
    assert rc == 2


@pytest.mark.skipif(not GSM8K.is_file(), reason="shared gsm8k data not present")
def test_train_hf_tiny_llama_on_gsm8k(tmp_path, capsys) -> None:
    from thoughtgrad.models.tiny import build_tokenizer, save_tiny
    from thoughtgrad.tasks.records import read_rows

    rows = read_rows(GSM8K, limit=40)
    tok = build_tokenizer([r["instruction"] + "\n" + r["output"] for r in rows],
                          vocab_size=1200)
    model_dir = save_tiny(tmp_path / "llama", "llama", tok)
    out = tmp_path / "run"
    rc = main(["train", "--model", str(model_dir), "--data", str(GSM8K), "--regime", "half",
               "--steps", "3", "--limit", "12", "--out", str(out), "--curvature-every", "2",
               "--curvature-max-iter", "5", "--probe-batch", "2", "--checkpoint-every", "2"])
    assert rc == 0
    df = pd.read_parquet(out / "dynamics.parquet")
    assert df.step.tolist() == [0, 1, 2] and (df.status == "ok").all()
    assert df.lambda_max.notna().tolist() == [True, False, True]
    m = json.loads((out / "manifest.json").read_text())["dynamics_half"]
    # half trains on the samples whose full (cot) response fits the 512-token default
    from thoughtgrad.experiments.dynamics_data import file_examples
    from thoughtgrad.models.hf import load_tokenizer

    cot, _ = file_examples(GSM8K, load_tokenizer(str(model_dir)), "cot", seed=0, limit=12)
    assert m["samples"] == len(cot) >= 4
    assert m["config"]["train"]["lr"] == 1e-5 and m["config"]["train"]["batch_size"] == 4


def test_changed_settings_are_refused_other_regimes_allowed(toy_base, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert toy_train(toy_base, out, "cot", 2) == 0
    before = pd.read_parquet(out / "dynamics.parquet")
    capsys.readouterr()
    for extra, changed in ((["--lr", "5e-3"], "train.lr"), (["--spike-factor", "2"],
                                                           "probes.spike_factor"),
                           (["--curvature-method", "both"], "probes.curvature_method")):
        assert toy_train(toy_base, out, "answer", 2, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and changed in err, err
    assert toy_train(toy_base, out, "cot", 3) == 2  # more steps: another schedule
    assert "train.steps: 2 -> 3" in capsys.readouterr().err
    # regime, device, checkpoint interval and offloading may differ
    assert toy_train(toy_base, out, "answer", 2, "--device", "cpu", "--offload") == 0
    after = pd.read_parquet(out / "dynamics.parquet")
    assert after[after.regime == "cot"].reset_index(drop=True).equals(
        before.reset_index(drop=True))
    assert sorted(after[after.regime == "answer"].step) == [0, 1]


@pytest.mark.parametrize("argv,flag", [
    (["train", "--curvature-tol", "0"], "--curvature-tol"),
    (["train", "--curvature-tol", "nan"], "--curvature-tol"),
    (["train", "--spike-factor", "-1"], "--spike-factor"),
    (["train", "--lr", "0"], "--lr"),
    (["hessian", "--tol", "0"], "--tol"),
    (["hessian", "--tol", "-1e-3"], "--tol"),
    (["hessian", "--trace-samples", "-2"], "--trace-samples"),
])
def test_nonpositive_tolerances_fail_at_parse_time(toy_base, tmp_path, capsys, argv,
                                                   flag) -> None:
    common = ["--model", str(toy_base), "--data", "toy:addition"]
    if argv[0] == "train":
        common += ["--regime", "cot", "--steps", "2", "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exc:
        main([argv[0], *common, *argv[1:]])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert flag in err[-1] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "r").exists()  # nothing written before the check


def test_probe_config_refuses_bad_tolerances() -> None:
    from thoughtgrad.errors import UserError
    from thoughtgrad.experiments.dynamics import ProbeConfig

    for kw in ({"curvature_tol": 0.0}, {"curvature_tol": float("nan")}, {"spike_factor": 0},
               {"spike_tau": -1.0}, {"curvature_max_iter": 0}):
        with pytest.raises(UserError, match=next(iter(kw))):
            ProbeConfig(**kw)


def test_train_help_says_what_each_regime_supervises(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "cot the full response: every reasoning step and the answer" in text
    assert "a seeded random half of each sample's reasoning steps removed" in text
    assert "half seed 000's \"Direct\"" in text
    assert "answer the bare answer only (the toy lab's `direct`)" in text


def test_surprisal_keeps_other_conditions(toy_base, tmp_path, capsys) -> None:
    out = tmp_path / "surp"

    def run(regime: str, limit: str, *extra: str) -> None:
        assert main(["surprisal", "--model", str(toy_base), "--data", "toy:addition",
                     "--limit", limit, "--out", str(out), "--regime", regime, *extra]) == 0

    run("cot", "4")
    run("half", "3")
    run("answer", "2", "--condition", "bare")
    tok = pd.read_parquet(out / "surprisal.parquet")
    per = pd.read_parquet(out / "surprisal_samples.parquet")
    assert per.groupby("condition").size().to_dict() == {"cot": 4, "half": 3, "bare": 2}
    first_cot = tok[tok.condition == "cot"].reset_index(drop=True)
    run("cot", "5")  # the same condition again: replaced, not duplicated
    tok = pd.read_parquet(out / "surprisal.parquet")
    per = pd.read_parquet(out / "surprisal_samples.parquet")
    assert per.groupby("condition").size().to_dict() == {"cot": 5, "half": 3, "bare": 2}
    assert len(tok) == len(tok.drop_duplicates(["condition", "sample_id", "position"]))
    again = tok[tok.condition == "cot"]
    again = again[again.sample_id.isin(first_cot.sample_id)].reset_index(drop=True)
    pd.testing.assert_frame_equal(again, first_cot)
    summary = capsys.readouterr().out.split("surprisal per condition")[-1]
    assert all(c in summary for c in ("cot", "half", "bare"))
