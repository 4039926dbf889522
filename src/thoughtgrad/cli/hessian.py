# SPDX-License-Identifier: MIT
"""``thoughtgrad hessian``: top Hessian eigenvalues and trace of the response-token loss."""

from __future__ import annotations

import argparse
import json

from thoughtgrad.cli.common import (
    HelpFormatter,
    add_out_option,
    nonneg_int,
    positive_float,
    positive_int,
    print_table,
)
from thoughtgrad.cli.options import add_config_options, add_set_option, from_args

DEFAULT_OUT = "runs/hessian"

DESCRIPTION = """\
Top-k eigenvalues (largest algebraic; Lanczos with full reorthogonalisation, or power
iteration with deflation) and the Hutchinson trace of the Hessian of the mean
response-token cross-entropy (nats) over the given samples, at the model's weights.
With --per-layer, the same for each block's parameters alone (the Hessian's diagonal
blocks; layer -1 = embeddings, final norm and LM head).

Writes the run directory's hessian table (one row per parameter set: all, or a layer)
and manifest. --json prints exactly one object on stdout:
  {"eigenvalues": [...], "trace": T, "hvps": N, "converged": true}
  (+ "layers": [...] with --per-layer); strict JSON: a value that is not a number is null

examples:
  thoughtgrad hessian --model runs/dyn/model-cot --data toy:addition --top-k 3
  thoughtgrad hessian --model path/to/hf --data gsm8k_train_with_cot_gpt4o.json --limit 8 --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    from thoughtgrad.experiments.dynamics import REGIMES
    from thoughtgrad.experiments.hessian import HESSIAN_METHODS, HessianConfig
    from thoughtgrad.tasks.encode import LOSS_SPANS

    p = sub.add_parser("hessian", help="top Hessian eigenvalues and trace of the loss",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    add_config_options(
        p, HessianConfig(model=""), required=("model", "data"),
        types_={"top_k": positive_int, "tol": positive_float, "max_iter": positive_int,
                "trace_samples": nonneg_int, "limit": positive_int,
                "max_length": positive_int},
        choices={"regime": REGIMES, "loss_span": LOSS_SPANS, "method": HESSIAN_METHODS},
        metavars={"device_map": "MAP"})
    add_out_option(p, default=DEFAULT_OUT, what="run directory (its hessian table is replaced)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_set_option(p)
    p.set_defaults(func=cmd_hessian)


def cmd_hessian(args: argparse.Namespace) -> int:
    from thoughtgrad import distributed

    with distributed.launched() as world:  # torchrun: the batches shared among the ranks
        return _hessian(args, world)


def _hessian(args: argparse.Namespace, world) -> int:
    from thoughtgrad.experiments.hessian import HessianConfig, measure_hessian
    from thoughtgrad.runs.store import RunDir

    cfg = from_args(HessianConfig(model=args.model), args)
    if not world.main:  # every rank computes the same result; rank 0 writes it
        measure_hessian(cfg, world=world)
        return 0
    run = RunDir.create(args.out, command="hessian", config=cfg, seed=cfg.seed)
    with run.recording():
        result = measure_hessian(cfg, world=world)
    run.write("hessian", result.table())
    run.set_status("completed", samples=result.samples)
    if args.json:
        print(json.dumps(result.summary(), allow_nan=False))
        return 0
    print_table(result.table(), title=f"Hessian of the mean {cfg.loss_span}-token CE over "
                                      f"{result.samples} samples ({cfg.method})", floatfmt=".5g")
    print(f"\nrun directory: {run.path}  (table: hessian)")
    return 0
