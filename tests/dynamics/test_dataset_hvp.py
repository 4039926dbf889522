# SPDX-License-Identifier: MIT
"""Hessian-vector products over a data set larger than one batch: the token-weighted
average of the batches' products equals the product of one batch holding every sample, in
one process and on two real gloo processes (torch.multiprocessing, all-reduce); and
``thoughtgrad hessian`` on two torchrun ranks gives the one-process eigenvalues. The
operator tests use fp64 weights and agree to 1e-9 relative (the products differ only in
summation order); the command runs in fp32 and its eigenvalues and trace agree to 1e-5."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from launch_fixtures import one_process, torchrun

from thoughtgrad.distributed import World, sum_tensors
from thoughtgrad.dynamics.attention import hvp_attention
from thoughtgrad.dynamics.dataset_hvp import dataset_hvp_operator
from thoughtgrad.dynamics.hessian import hvp_operator
from thoughtgrad.dynamics.probes import default_loss
from thoughtgrad.experiments.dynamics_data import probe_batches, toy_examples
from thoughtgrad.models.gpt_mini import GPTMini
from thoughtgrad.tasks.toy import TOKENIZER

N_SAMPLES, BATCH = 7, 2  # batches of 2, 2, 2, 1 samples: uneven token counts



def _setup(base: Path) -> tuple[GPTMini, list, list[torch.Tensor]]:
    model = GPTMini.load(base).double().eval()
    examples = toy_examples(str(base), "addition", "cot", seed=0, limit=N_SAMPLES)
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(3)
    v = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    return model, examples, v


def _batches(model, examples, rank: int = 0, size: int = 1) -> list:
    chunks = [examples[i:i + BATCH] for i in range(0, len(examples), BATCH)]
    out = []
    for j, c in enumerate(chunks):
        if j % size == rank:
            b, _ = probe_batches(c, len(c), TOKENIZER.pad_id)
            out.append((lambda b=b: default_loss(model, b), b.n_tokens))
    return out


def _union(model, examples, v) -> list[torch.Tensor]:
    batch, _ = probe_batches(examples, len(examples), TOKENIZER.pad_id)
    with hvp_attention(model):
        return hvp_operator(lambda: default_loss(model, batch), list(model.parameters()))(v)


def _assert_close(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    scale = max(float(w.abs().max()) for w in want)
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True))
           if not torch.allclose(g, w, rtol=1e-9, atol=1e-12 * scale)]
    assert not bad, f"parameters {bad} differ"


def test_batches_weighted_by_tokens_equal_one_batch(toy_base) -> None:
    model, examples, v = _setup(toy_base)
    with hvp_attention(model):
        got = dataset_hvp_operator(_batches(model, examples), list(model.parameters()))(v)
    _assert_close(got, _union(model, examples, v))
    # the plain average of batch means (PyHessian's) is a different operator here
    sizes = {n for _, n in _batches(model, examples)}
    assert len(sizes) > 1


def _rank(rank: int, size: int, init: str, base: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", init_method=f"file://{init}", rank=rank,
                                         world_size=size)
    try:
        model, examples, v = _setup(Path(base))
        world = World(rank=rank, size=size)
        with hvp_attention(model):
            op = dataset_hvp_operator(_batches(model, examples, rank, size),
                                      list(model.parameters()),
                                      reduce=lambda ts: sum_tensors(world, ts))
            torch.save(op(v), Path(out) / f"hv-{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_all_reduce_equals_one_process(toy_base, tmp_path) -> None:
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(toy_base), str(tmp_path)), nprocs=2)
    model, examples, v = _setup(toy_base)
    want = _union(model, examples, v)
    for rank in range(2):
        _assert_close(torch.load(tmp_path / f"hv-{rank}.pt"), want)


def test_hessian_command_on_two_ranks(toy_base, tmp_path) -> None:
    argv = ["hessian", "--model", toy_base, "--data", "toy:addition", "--limit", N_SAMPLES,
            "--top-k", "2", "--trace-samples", "2", "--max-iter", "40", "--tol", "1e-8",
            "--device", "cpu", "--json"]
    one = one_process([*argv, "--out", tmp_path / "one"])
    two = torchrun(2, [*argv, "--batch-size", BATCH, "--out", tmp_path / "two"])
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    a, b = json.loads(one.stdout), json.loads(two.stdout)
    assert b["eigenvalues"] == pytest.approx(a["eigenvalues"], rel=1e-5)
    assert b["trace"] == pytest.approx(a["trace"], rel=1e-5)
    assert (tmp_path / "two" / "hessian.parquet").is_file()


def test_hessian_killed_rank_then_one_process(toy_base, tmp_path) -> None:
    """Rank 1 of a two-rank ``thoughtgrad hessian`` is killed once the run directory exists
    (mid-measurement: its products are all-reduced, so rank 0 cannot finish either); the
    same command on one process then completes it: the eigenvalues and trace of an
    uninterrupted run, each table row once."""
    import pandas as pd
    from launch_fixtures import killed_run

    argv = ["hessian", "--model", toy_base, "--data", "toy:addition", "--limit", N_SAMPLES,
            "--top-k", "2", "--trace-samples", "2", "--max-iter", "40", "--tol", "1e-8",
            "--device", "cpu", "--batch-size", BATCH, "--json"]
    want = one_process([*argv, "--out", tmp_path / "whole"])
    assert want.returncode == 0, want.stderr[-3000:]
    out = tmp_path / "killed"
    killed = killed_run(2, [*argv, "--out", out], 1, (out / "manifest.json").is_file)
    assert killed.returncode != 0, "the job finished although a rank was killed"
    assert not (out / "hessian.parquet").is_dir() or \
        pd.read_parquet(out / "hessian.parquet").empty, "a killed job wrote its result"
    res = one_process([*argv, "--out", out])
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = json.loads(want.stdout), json.loads(res.stdout)
    assert b["eigenvalues"] == pytest.approx(a["eigenvalues"], rel=1e-5)
    assert b["trace"] == pytest.approx(a["trace"], rel=1e-5)
    got, ref = (pd.read_parquet(d / "hessian.parquet") for d in (out, tmp_path / "whole"))
    assert len(got) == len(ref) and not got.duplicated().any()
