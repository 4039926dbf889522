# SPDX-License-Identifier: MIT
"""Dynamics probes inside the SFT loop, each against an independent recomputation."""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest
import torch

from thoughtgrad.dynamics.hessian import hvp_operator, power_iteration, top_eigenvalues
from thoughtgrad.dynamics.monitor import (
    AnswerControlProbe,
    CosineProbe,
    CurvatureProbe,
    DistanceProbe,
    DynamicsMonitor,
    GradNormProbe,
    SpikeDetector,
    layer_index,
    math_attention,
)
from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
from thoughtgrad.report.store import RunDir
from thoughtgrad.train.sft import Batch, TrainConfig, TrainState, lm_loss, train

V, T, B = 11, 9, 3
SHIFT = 30.0
ANSWER_TAU, ANSWER_FACTOR = 1.9, 0.9


def tiny_model(seed: int = 0) -> GPTMini:
    return GPTMini(GPTMiniConfig(vocab_size=V, block_size=16, n_layer=2, n_head=2, d_model=8,
                                 mlp_ratio=2, seed=seed))


def batches(seed: int = 0):
    def make(step: int) -> Batch:
        g = torch.Generator().manual_seed(seed * 1000 + step)
        ids = torch.randint(0, V, (B, T), generator=g)
        labels = ids.clone()
        labels[:, :3] = -100  # prompt
        return Batch(ids, labels, torch.ones_like(ids))
    return make


def answer_only(make):
    def f(step: int) -> Batch:
        b = make(step)
        labels = b.labels.clone()
        labels[:, : T - 2] = -100  # the last two tokens are "the answer"
        return Batch(b.input_ids, labels, b.attention_mask)
    return f


def cfg(steps: int = 6, **kw) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=B, lr=1e-2, warmup_steps=1, **kw)


def oracle_grads(model: GPTMini, batch: Batch) -> list[torch.Tensor]:
    model.zero_grad(set_to_none=True)
    lm_loss(model(batch.input_ids), batch.labels).backward()
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
                op = hvp_operator(lambda r=replay: lm_loss(r(probe_batch.input_ids),
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
    mon = DynamicsMonitor([probe], regime="direct")
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


def test_nonfinite_stops_cleanly_and_is_recorded(tmp_path) -> None:
    make = batches(2)

    def loss_fn(model, batch):
        loss = lm_loss(model(batch.input_ids), batch.labels)
        return loss * float("nan") if int(batch.input_ids[0, 0]) == int(make(2).input_ids[0, 0]) \
            and torch.equal(batch.input_ids, make(2).input_ids) else loss

    run = RunDir.create(tmp_path / "run", command="test")
    mon = DynamicsMonitor([GradNormProbe(), CosineProbe(), DistanceProbe()], regime="cot",
                          run=run)
    res = train(cfg(6), tiny_model(), make, [mon], loss_fn=loss_fn)
    assert res.stopped_reason and "step 2" in res.stopped_reason
    df = run.read("dynamics")
    assert list(df.step) == [0, 1, 2]
    assert df.status.tolist() == ["ok", "ok", "nonfinite"]
    assert bool(df.skipped.iloc[-1]) and math.isnan(df.loss.iloc[-1])


def test_skip_option_flags_the_step() -> None:
    make = batches(3)
    bad = make(1).input_ids

    def loss_fn(model, batch):
        loss = lm_loss(model(batch.input_ids), batch.labels)
        return loss + float("inf") if torch.equal(batch.input_ids, bad) else loss

    mon = DynamicsMonitor([GradNormProbe(), CosineProbe()], regime="cot")
    res = train(cfg(4, on_nonfinite="skip"), tiny_model(), make, [mon], loss_fn=loss_fn)
    assert res.stopped_reason is None
    df = pd.DataFrame(mon.rows)
    assert df.skipped.tolist() == [False, True, False, False]
    assert df.status.tolist() == ["ok", "nonfinite", "ok", "ok"]
    assert math.isnan(df.cos_prev.iloc[2])  # no previous finite gradient to compare with


def test_curvature_failure_is_recorded_and_training_goes_on() -> None:
    make = batches(4)

    def oom(model, batch):
        raise RuntimeError("CUDA out of memory. Tried to allocate 80 GiB")

    mon = DynamicsMonitor([CurvatureProbe(make(50), every=2, loss_fn=oom), GradNormProbe()],
                          regime="cot")
    res = train(cfg(4), tiny_model(), make, [mon])
    assert res.stopped_reason is None and res.steps_done == 4
    df = pd.DataFrame(mon.rows)
    assert df.status.iloc[0].startswith("curvature_oom")
    assert df.status.iloc[1] == "ok" and df.status.iloc[2].startswith("curvature_oom")
    assert df.lambda_max.isna().all()


def test_resumed_run_keeps_one_row_per_step(tmp_path) -> None:
    make = batches(5)
    run = RunDir.create(tmp_path / "run", command="test")
    ckpt = tmp_path / "ckpt"
    model = tiny_model()
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    mon = DynamicsMonitor([GradNormProbe(), DistanceProbe(initial=init)], regime="cot",
                          run=run, flush_every=2)
    train(cfg(4, checkpoint_every=2), model, make, [mon], checkpoint_dir=ckpt)
    # a longer run in the same directory continues from step 4, writing steps 4 and 5 only
    mon2 = DynamicsMonitor([GradNormProbe(), DistanceProbe(initial=init)], regime="cot",
                           run=run, flush_every=2)
    train(cfg(6, checkpoint_every=2), tiny_model(), make, [mon2], checkpoint_dir=ckpt)
    df = run.read("dynamics").sort_values("step")
    assert df.step.tolist() == list(range(6))
    assert df.dist_init.is_monotonic_increasing or df.dist_init.iloc[-1] > df.dist_init.iloc[0]
    lay = run.read("layer_grad_norms")
    assert sorted(set(lay.step)) == list(range(6))
    assert len(lay) == len(lay.drop_duplicates(["regime", "step", "layer"]))


def test_both_methods_record_their_own_iterations() -> None:
    """Under ``both`` the power run's iterations and HVPs get their own columns, equal to a
    direct call of each solver at the same weights."""
    make = batches(6)
    probe_batch = make(77)
    model = tiny_model()
    snap: dict[str, torch.Tensor] = {}

    class Snap:
        def after_backward(self, state: TrainState) -> None:
            if state.step == 0:
                snap.update({n: p.detach().clone() for n, p in state.model.named_parameters()})

    mon = DynamicsMonitor([CurvatureProbe(probe_batch, every=10, method="both", tol=1e-4,
                                          max_iter=40)], regime="cot")
    train(cfg(1), model, make, [Snap(), mon])
    row = mon.rows[0]
    replay = tiny_model()
    replay.load_state_dict(snap)
    params = list(replay.parameters())
    with math_attention():
        want = {m: top_eigenvalues(lambda: lm_loss(replay(probe_batch.input_ids),
                                                   probe_batch.labels), params, method=m,
                                   tol=1e-4, max_iter=40) for m in ("lanczos", "power")}
    assert row["status"] == "ok" and row["lambda_method"] == "lanczos"
    assert (row["lambda_iters"], row["lambda_hvps"]) == (want["lanczos"].iterations,
                                                         want["lanczos"].hvps)
    assert (row["lambda_iters_power"], row["lambda_hvps_power"]) == (want["power"].iterations,
                                                                     want["power"].hvps)
    assert row["lambda_converged_power"] == want["power"].converged
    assert row["lambda_max_power"] == pytest.approx(want["power"].eigenvalues[0], rel=1e-6)


@pytest.mark.parametrize("exc", [ValueError("bad shape in HVP"), KeyError("logits"),
                                 ZeroDivisionError("x"), torch.linalg.LinAlgError("eigh")])
def test_any_curvature_exception_is_recorded_and_training_goes_on(exc) -> None:
    make = batches(7)

    def broken(model, batch):
        raise exc

    mon = DynamicsMonitor([GradNormProbe(), CurvatureProbe(make(50), every=2, loss_fn=broken)],
                          regime="cot")
    res = train(cfg(3), tiny_model(), make, [mon])
    assert res.stopped_reason is None and res.steps_done == 3
    df = pd.DataFrame(mon.rows)
    want = f"curvature_error: {type(exc).__name__}"
    assert df.status.iloc[0].startswith(want) and df.status.iloc[1] == "ok"
    assert df.status.iloc[2].startswith(want) and df.lambda_max.isna().all()


def test_nonfinite_curvature_is_recorded() -> None:
    make = batches(8)

    def nan_loss(model, batch):
        return lm_loss(model(batch.input_ids), batch.labels) * float("nan")

    mon = DynamicsMonitor([CurvatureProbe(make(50), every=1, loss_fn=nan_loss, max_iter=3)],
                          regime="cot")
    res = train(cfg(2), tiny_model(), make, [mon])
    assert res.stopped_reason is None
    statuses = [r["status"] for r in mon.rows]
    assert all(s.startswith(("curvature_nonfinite", "curvature_error")) for s in statuses)


def test_any_probe_failure_is_recorded_and_training_goes_on() -> None:
    make = batches(9)

    def no_batch(step: int) -> Batch:
        if step == 1:
            raise IndexError("answer batch 1 is missing")
        return answer_only(make)(step)

    mon = DynamicsMonitor([GradNormProbe(), CosineProbe(), AnswerControlProbe(no_batch)],
                          regime="cot")
    res = train(cfg(3), tiny_model(), make, [mon])
    assert res.stopped_reason is None and res.steps_done == 3
    df = pd.DataFrame(mon.rows)
    assert df.status.tolist() == ["ok", "answer_control_error: IndexError: answer batch 1 "
                                  "is missing", "ok"]
    assert math.isnan(df.grad_norm_answer.iloc[1]) and df.cos_prev.iloc[1:].notna().all()
    # the failed step breaks the chain of consecutive answer-only gradients
    assert math.isnan(df.cos_prev_answer.iloc[2]) and df.grad_norm_answer.iloc[2] > 0


@pytest.mark.parametrize("kw", [{"tol": 0.0}, {"tol": -1e-3}, {"tol": float("nan")},
                                {"max_iter": 0}, {"every": 0}, {"method": "arnoldi"}])
def test_bad_curvature_settings_fail_before_training(kw) -> None:
    with pytest.raises(ValueError):
        CurvatureProbe(batches()(0), **kw)


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
