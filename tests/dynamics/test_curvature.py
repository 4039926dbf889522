# SPDX-License-Identifier: MIT
"""The curvature probe inside the SFT loop: both methods against direct solver calls, and
every failure recorded in the row's status while training goes on."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from probe_fixtures import batches, cfg, tiny_model

from thoughtgrad.dynamics.attention import math_attention
from thoughtgrad.dynamics.curvature import CurvatureProbe
from thoughtgrad.dynamics.hessian import top_eigenvalues
from thoughtgrad.dynamics.monitor import DynamicsMonitor
from thoughtgrad.dynamics.probes import GradNormProbe
from thoughtgrad.train.sft import TrainState, lm_loss, train


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
        want = {m: top_eigenvalues(lambda: lm_loss(replay(probe_batch.input_ids).logits,
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
        return lm_loss(model(batch.input_ids).logits, batch.labels) * float("nan")

    mon = DynamicsMonitor([CurvatureProbe(make(50), every=1, loss_fn=nan_loss, max_iter=3)],
                          regime="cot")
    res = train(cfg(2), tiny_model(), make, [mon])
    assert res.stopped_reason is None
    statuses = [r["status"] for r in mon.rows]
    assert all(s.startswith(("curvature_nonfinite", "curvature_error")) for s in statuses)


@pytest.mark.parametrize("kw", [{"tol": 0.0}, {"tol": -1e-3}, {"tol": float("nan")},
                                {"max_iter": 0}, {"every": 0}, {"method": "arnoldi"}])
def test_bad_curvature_settings_fail_before_training(kw) -> None:
    with pytest.raises(ValueError):
        CurvatureProbe(batches()(0), **kw)
