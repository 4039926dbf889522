# SPDX-License-Identifier: MIT
"""Gradient-norm, spike, cosine, answer-only and distance probes inside the SFT loop, each
against an independent recomputation."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
import torch
from probe_fixtures import answer_only, batches, cfg, tiny_model

from thoughtgrad.dynamics.attention import math_attention
from thoughtgrad.dynamics.curvature import CurvatureProbe
from thoughtgrad.dynamics.hessian import hvp_operator, power_iteration
from thoughtgrad.dynamics.monitor import DynamicsMonitor
from thoughtgrad.dynamics.probes import (
    AnswerControlProbe,
    CosineProbe,
    DistanceProbe,
    GradNormProbe,
    SpikeDetector,
    layer_index,
)
from thoughtgrad.models.gpt_mini import GPTMini
from thoughtgrad.train.sft import Batch, TrainState, lm_loss, train

SHIFT = 30.0
ANSWER_TAU, ANSWER_FACTOR = 1.9, 0.9


def oracle_grads(model: GPTMini, batch: Batch) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    lm_loss(model(batch.input_ids).logits, batch.labels).backward()
    out = [p.grad.detach().clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    return out


def test_layer_index() -> None:
    assert layer_index("blocks.3.attn.q.weight") == 3
    assert layer_index("model.layers.12.mlp.up_proj.weight") == 12
    assert layer_index("transformer.h.0.attn.c_attn.weight") == 0
    assert layer_index("tok_emb.weight") == -1


def test_probes_against_recomputation() -> None:
    """Replay the run step by step with plain autograd and compare every column."""
    make = batches()
    model = tiny_model()
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    probe_batch = make(999)
    grad = GradNormProbe(tau=1e9)
    mon = DynamicsMonitor([grad, CosineProbe(), DistanceProbe(),
                           AnswerControlProbe(answer_only(make), tau=ANSWER_TAU,
                                              factor=ANSWER_FACTOR, min_history=2),
                           CurvatureProbe(probe_batch, every=3, tol=1e-8, max_iter=200)],
                          regime="cot")
    snapshots: list[dict[str, torch.Tensor]] = []

    class Snap:
        def after_backward(self, state: TrainState) -> None:
            snapshots.append({n: p.detach().clone() for n, p in state.model.named_parameters()})

    train(cfg(6), model, make, [mon, Snap()])
    df = pd.DataFrame(mon.rows)
    assert list(df.step) == list(range(6))
    assert (df.status == "ok").all()
    replay = tiny_model()
    final = {n: p.detach().clone() for n, p in model.named_parameters()}
    prev = prev_answer = None
    answer_norms: list[float] = []
    for step, snap in enumerate(snapshots):
        replay.load_state_dict(snap)
        g = oracle_grads(replay, make(step))
        flat = torch.cat([x.reshape(-1) for x in g])
        row = df.iloc[step]
        assert row.grad_norm == pytest.approx(float(flat.norm()), rel=1e-5)
        cos = math.nan if prev is None else float(flat @ prev / (flat.norm() * prev.norm()))
        assert (math.isnan(row.cos_prev) and math.isnan(cos)) or \
            row.cos_prev == pytest.approx(cos, abs=1e-5)
        prev = flat
        ga = torch.cat([x.reshape(-1) for x in oracle_grads(replay, answer_only(make)(step))])
        norm_a = float(ga.norm())
        assert row.grad_norm_answer == pytest.approx(norm_a, rel=1e-5)
        cos_a = math.nan if prev_answer is None else \
            float(ga @ prev_answer / (ga.norm() * prev_answer.norm()))
        assert (math.isnan(row.cos_prev_answer) and math.isnan(cos_a)) or \
            row.cos_prev_answer == pytest.approx(cos_a, abs=1e-5)
        prev_answer = ga
        rel = len(answer_norms) >= 2 and \
            norm_a > ANSWER_FACTOR * statistics.median(answer_norms)
        assert bool(row.spike_answer) == (norm_a > ANSWER_TAU or rel), step
        answer_norms.append(norm_a)
        if step % 3 == 0:
            params = list(replay.parameters())
            # independent algorithm: power iteration on H + 30 I (the shift makes the
            # algebraic top dominant; at random init H has larger negative eigenvalues)
            with math_attention():
                op = hvp_operator(lambda r=replay: lm_loss(r(probe_batch.input_ids).logits,
                                                           probe_batch.labels), params)
                want = power_iteration(
                    lambda v, op=op: [h + SHIFT * x for h, x in zip(op(v), v, strict=True)],
                    params, tol=1e-7, max_iter=5000)
            assert row.lambda_max == pytest.approx(want.eigenvalues[0] - SHIFT, rel=1e-3)
            assert row.lambda_method == "lanczos" and row.lambda_hvps > 0
        else:
            assert math.isnan(row.lambda_max)
    # distance after the last step = ||theta_final - theta_0||
    d = math.sqrt(sum(float((final[n] - init[n]).pow(2).sum()) for n in init))
    n0 = math.sqrt(sum(float(v.pow(2).sum()) for v in init.values()))
    assert df.spike_answer.any() and not df.spike_answer.all()  # the check saw both
    assert df.iloc[-1].dist_init == pytest.approx(d, rel=1e-5)
    assert df.iloc[-1].dist_init_rel == pytest.approx(d / n0, rel=1e-5)
    layers = pd.DataFrame(grad.drain().get("layer_grad_norms", []))
    assert layers.empty  # the monitor drained them into its pending tables


def test_layer_norms_add_up_and_spikes() -> None:
    make = batches(1)
    probe = GradNormProbe(tau=0.0, factor=1e9)  # every finite step is an absolute spike
    mon = DynamicsMonitor([probe], regime="half")
    layer_rows: list[dict] = []

    class Keep:
        def on_step_end(self, state: TrainState) -> None:
            layer_rows.extend(mon._extra.pop("layer_grad_norms", []))

    train(cfg(3), tiny_model(), make, [mon, Keep()])
    df = pd.DataFrame(mon.rows)
    assert df.spike_abs.all() and not df.spike_rel.any() and df.spike.all()
    lay = pd.DataFrame(layer_rows)
    assert set(lay.layer) == {-1, 0, 1}
    total = lay.groupby("step").grad_norm.apply(lambda s: math.sqrt((s**2).sum()))
    assert total.tolist() == pytest.approx(df.grad_norm.tolist(), rel=1e-5)


def test_relative_spike_flag() -> None:
    probe = GradNormProbe(factor=3.0, window=10, min_history=3, per_layer=False)
    model = tiny_model()
    flags = []
    for i, norm in enumerate([1.0, 1.1, 0.9, 1.0, 5.0, 1.0, float("nan"), 2.9]):
        flags.append(probe.after_backward(TrainState(step=i, model=model, grad_norm=norm)))
    rel = [f["spike_rel"] for f in flags]
    assert rel == [False, False, False, False, True, False, False, False]


@pytest.mark.parametrize("kw", [{"factor": 0.0}, {"tau": -1.0}, {"window": 0},
                                {"tau": float("inf")}])
def test_bad_spike_settings_fail_before_training(kw) -> None:
    with pytest.raises(ValueError):
        SpikeDetector(**kw)
    with pytest.raises(ValueError):
        AnswerControlProbe(batches(), **kw)


def test_spike_detector_against_a_hand_computation() -> None:
    det = SpikeDetector(tau=2.0, factor=1.5, window=3, min_history=2)
    norms = [1.0, 3.0, 1.2, 2.5, float("inf"), 1.1, 4.0]
    seen: list[float] = []
    for norm in norms:
        want_abs = math.isfinite(norm) and norm > 2.0
        want_rel = math.isfinite(norm) and len(seen) >= 2 and \
            norm > 1.5 * statistics.median(seen[-3:])
        assert det.update(norm) == (want_abs, want_rel), norm
        if math.isfinite(norm):
            seen.append(norm)
