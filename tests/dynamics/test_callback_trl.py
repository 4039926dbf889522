# SPDX-License-Identifier: MIT
"""The dynamics TrainerCallback inside TRL's SFTTrainer (prompt-completion data, loss on
the completion only), on a tiny random-init llama and real gsm8k records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL is a test extra (pip install -e '.[test]')")
datasets = pytest.importorskip("datasets")

from thoughtgrad.dynamics.callback import DynamicsCallback  # noqa: E402
from thoughtgrad.models.tiny import build_tokenizer, tiny_model  # noqa: E402
from thoughtgrad.runs.store import RunDir  # noqa: E402

GSM8K = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "layer_gradient" / \
    "cot_500" / "gsm8k_train_with_cot_gpt4o.json"


def test_callback_in_sft_trainer(tmp_path: Path) -> None:
    if not GSM8K.is_file():
        pytest.skip(f"shared data not found at {GSM8K}")
    records = json.loads(GSM8K.read_text())[:8]
    pairs = [{"prompt": r["instruction"] + "\n", "completion": r["output"][:300]}
             for r in records]
    tok = build_tokenizer([p["prompt"] + p["completion"] for p in pairs], vocab_size=512)
    model = tiny_model("llama", vocab_size=len(tok), seed=0).train()
    enc = tok([pairs[0]["prompt"] + pairs[0]["completion"]], return_tensors="pt")
    labels = enc["input_ids"].clone()
    labels[:, : len(tok(pairs[0]["prompt"])["input_ids"])] = -100
    probe = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
             "labels": labels}
    run_dir = tmp_path / "run"
    cb = DynamicsCallback(run_dir, regime="cot", probe_batch=probe, curvature_every=2)
    args = trl.SFTConfig(output_dir=str(tmp_path / "out"), max_steps=5,
                         per_device_train_batch_size=2, learning_rate=1e-3, logging_steps=1,
                         save_strategy="no", report_to=[], use_cpu=True, seed=0,
                         max_length=256, completion_only_loss=True, disable_tqdm=True)
    trainer = trl.SFTTrainer(model=model, args=args, processing_class=tok,
                             train_dataset=datasets.Dataset.from_list(pairs), callbacks=[cb])
    trainer.train()
    df = RunDir.open(run_dir).read("dynamics").sort_values("step")
    assert df.step.tolist() == [0, 1, 2, 3, 4]
    assert (df.status == "ok").all(), df.status.tolist()
    assert df.grad_norm.notna().all() and (df.grad_norm > 0).all()
    assert df.loss.notna().all() and torch.isfinite(torch.tensor(df.loss.to_numpy())).all()
    assert df.lambda_max.notna().tolist() == [True, False, True, False, True]
    assert (df.spike_source == "pre_clip").all()
