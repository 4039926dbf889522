# SPDX-License-Identifier: MIT
"""``thoughtgrad surprisal``: per-token surprisal and logit-gradient norms (seed 000)."""

from __future__ import annotations

import argparse

from thoughtgrad.cli.common import (
    HelpFormatter,
    add_out_option,
    nonneg_float,
    positive_int,
    print_table,
)
from thoughtgrad.cli.options import add_config_options, add_set_option, from_args

DESCRIPTION = """\
Per response token: surprisal in bits, p of the true token, and the norm of the loss
gradient with respect to the logits from the softmax alone (Lemma 1), with the Lemma 2
interval 1 - ||g|| <= p_true <= 1 - ||g||/sqrt(2) checked on every token (violations are
reported; there should be none). Per sample: total / mean / max surprisal and the count of
tokens whose logit-gradient norm exceeds --tau.

Tables: surprisal (one row per token), surprisal_samples (one row per sample). Running the
command again into the same --out with another --regime / --condition adds that condition;
re-running a condition replaces only that condition's rows.

examples:
  thoughtgrad surprisal --model runs/dyn/model-cot --data toy:addition --out runs/surp
  thoughtgrad surprisal --model path/to/hf --data gsm8k_train_with_cot_gpt4o.json \\
      --regime half --out runs/surp
"""


def register(sub: argparse._SubParsersAction) -> None:
    from thoughtgrad.experiments.dynamics import REGIMES
    from thoughtgrad.experiments.surprisal import SurprisalConfig

    p = sub.add_parser("surprisal", help="per-token surprisal and logit-gradient norms",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    base = SurprisalConfig(model="")
    add_config_options(p, base, only=("model", "data"), required=("model", "data"))
    add_out_option(p, required=True, what="run directory")
    add_config_options(p, base, skip=("model", "data"), choices={"regime": REGIMES},
                       types_={"tau": nonneg_float, "limit": positive_int,
                               "batch_size": positive_int, "max_length": positive_int},
                       metavars={"device_map": "MAP"})
    add_set_option(p)
    p.set_defaults(func=cmd_surprisal)


def cmd_surprisal(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.surprisal import (
        SurprisalConfig,
        run_surprisal,
        surprisal_summary,
    )
    from thoughtgrad.runs.store import RunDir

    cfg = from_args(SurprisalConfig(model=args.model), args)
    run = RunDir.create(args.out, command="surprisal", seed=cfg.seed)
    with run.recording():
        samples = run_surprisal(cfg, run)
    print_table(surprisal_summary(samples), floatfmt=".4g",
                title="surprisal per condition (tau: the surprisal_samples column)")
    print(f"\nrun directory: {run.path}  (tables: surprisal, surprisal_samples)")
    return 0
