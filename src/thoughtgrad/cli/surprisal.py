# SPDX-License-Identifier: MIT
"""``thoughtgrad surprisal``: per-token surprisal and logit-gradient norms (seed 000)."""

from __future__ import annotations

import argparse

from thoughtgrad.cli.common import HelpFormatter, nonneg_float, positive_int, print_table

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
      --regime direct --out runs/surp
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("surprisal", help="per-token surprisal and logit-gradient norms",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="gpt_mini checkpoint or HF model dir / id")
    p.add_argument("--data", required=True, help="toy:<task> or an Alpaca-style JSON/JSONL file")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--regime", choices=["cot", "direct", "answer"], default="cot",
                   help="response variant (cot = the data's responses unchanged)")
    p.add_argument("--condition", default=None,
                   help="condition label of the rows (default: the regime)")
    p.add_argument("--tau", type=nonneg_float, default=0.5,
                   help="logit-gradient-norm threshold for counting spikes (norms lie in "
                        "[0, sqrt 2])")
    p.add_argument("--limit", type=positive_int, default=None)
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--max-length", type=positive_int, default=512)
    p.add_argument("--chat-template", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_surprisal)


def cmd_surprisal(args: argparse.Namespace) -> int:
    import pandas as pd

    from thoughtgrad.config import resolve_device
    from thoughtgrad.experiments.dynamics import measure_surprisal
    from thoughtgrad.experiments.dynamics_data import load_examples
    from thoughtgrad.models.hf import load_model
    from thoughtgrad.runs.store import RunDir

    device = resolve_device(args.device)
    model = load_model(args.model, device=str(device))
    examples, pad_id, failed = load_examples(model, args.model, args.data, args.regime,
                                             seed=args.seed, limit=args.limit,
                                             max_length=args.max_length,
                                             chat_template=args.chat_template)
    condition = args.condition or args.regime
    run = RunDir.create(args.out, command="surprisal", seed=args.seed)
    tokens, samples = measure_surprisal(model, examples, pad_id=pad_id, condition=condition,
                                        device=device, batch_size=args.batch_size,
                                        tau=args.tau)
    run.replace_rows("surprisal", "condition", condition, tokens)
    samples = run.replace_rows("surprisal_samples", "condition", condition, samples)
    run.replace_rows("surprisal_failed", "condition", condition,
                     pd.DataFrame([{"condition": condition, **f} for f in failed],
                                  columns=["condition", "sample_id", "source", "reason"]))
    settings = run.manifest().get("surprisal", {})
    settings[condition] = vars(args) | {"func": None}
    run.update_manifest(surprisal=settings)
    run.set_status("completed", samples=len(samples), failed=len(failed))
    summary = samples.groupby("condition", sort=False).agg(
        samples=("sample_id", "count"), tokens=("n_tokens", "sum"),
        mean_total_bits=("total_surprisal_bits", "mean"),
        mean_max_bits=("max_surprisal_bits", "mean"),
        tokens_above_tau=("n_above_tau", "sum"),
        lemma2_violations=("lemma2_violations", "sum")).reset_index()
    print_table(summary, title="surprisal per condition (tau: the surprisal_samples column)",
                floatfmt=".4g")
    print(f"\nrun directory: {run.path}  (tables: surprisal, surprisal_samples)")
    return 0
