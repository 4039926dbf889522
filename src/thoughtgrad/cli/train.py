# SPDX-License-Identifier: MIT
"""``thoughtgrad train``: fine-tune under one supervision regime with the dynamics probes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

from thoughtgrad.cli.common import (
    HelpFormatter,
    nonneg_float,
    positive_float,
    positive_int,
    print_table,
)
from thoughtgrad.errors import UserError

DESCRIPTION = """\
Fine-tune a model under one supervision regime and record its training dynamics (seed 000):
per step the loss, the pre-clip gradient norm and its spikes, per-layer gradient norms, the
cosine between consecutive gradients, the distance from the initial weights, and every
--curvature-every steps the Hessian's largest eigenvalue on a fixed probe batch. The
answer-only loss is measured at the same weights as a length control.

regimes (what the response, and so the loss, contains; the prompt is never supervised):
  cot     the full response: every reasoning step and the answer
  direct  seed 000's "Direct": a seeded random half of each sample's reasoning steps
          removed, the remaining steps and the answer supervised (the same steps are
          dropped in every run). NOT the toy lab's `toy train --regime direct`, which
          is answer-only; that one is `answer` here
  answer  the bare answer only (the toy lab's `direct`)

Run the command once per regime with the same --out to compare them; re-running a command
resumes from its last checkpoint. A directory holds one set of settings: every setting
that changes the numbers (model, data, lr, steps, batch, seed, probes, ...) must match
the runs already in it (only --regime, --device, --checkpoint-every and --offload may
differ). Tables: dynamics, layer_grad_norms.

examples:
  thoughtgrad train --model runs/toy/checkpoints/addition-n3000-cot --data toy:addition \\
      --regime direct --steps 300 --out runs/dyn
  thoughtgrad train --model path/to/hf_model --data gsm8k_train_with_cot_gpt4o.json \\
      --regime cot --steps 1000 --out runs/dyn_llama
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune under a regime, recording training dynamics",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True,
                   help="gpt_mini checkpoint directory, or a Hugging Face model directory or id")
    p.add_argument("--data", required=True,
                   help="toy:addition / toy:fold (held-out toy problems; gpt_mini only), or an "
                        "Alpaca-style JSON/JSONL file")
    p.add_argument("--regime", required=True, choices=["cot", "direct", "answer"],
                   help="cot = reasoning + answer; direct = a seeded half of the reasoning "
                        "steps + answer (seed 000; differs from the toy lab's answer-only "
                        "direct); answer = answer only")
    p.add_argument("--steps", type=positive_int, required=True, help="optimizer steps")
    p.add_argument("--out", required=True, help="run directory (created or resumed)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="default: 4 for HF models (seed 000), 64 for gpt_mini (toy lab)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="default: 1e-5 constant for HF models, the toy lab's 1e-3 schedule "
                        "for gpt_mini")
    p.add_argument("--seed", type=int, default=None, help="default: 42 (HF), 0 (gpt_mini)")
    p.add_argument("--grad-clip", type=nonneg_float, default=1.0,
                   help="global norm clip (0 = off)")
    p.add_argument("--checkpoint-every", type=positive_int, default=100)
    p.add_argument("--on-nonfinite", choices=["stop", "skip"], default="stop",
                   help="NaN/inf loss or gradient: stop (last good checkpoint kept) or skip "
                        "the step with a flag")
    p.add_argument("--curvature-every", type=positive_int, default=100,
                   help="steps between lambda_max estimates (also at the first and last step)")
    p.add_argument("--curvature-method", choices=["lanczos", "power", "both"],
                   default="lanczos")
    p.add_argument("--curvature-tol", type=positive_float, default=1e-3,
                   help="relative change of lambda_max that stops the iteration")
    p.add_argument("--curvature-max-iter", type=positive_int, default=30,
                   help="HVP cap per estimate")
    p.add_argument("--probe-batch", type=positive_int, default=8,
                   help="samples in the fixed curvature probe batch")
    p.add_argument("--spike-tau", type=nonneg_float, default=None,
                   help="absolute gradient-norm threshold for a spike")
    p.add_argument("--spike-factor", type=positive_float, default=3.0,
                   help="relative spike: norm above this times the rolling median")
    p.add_argument("--no-answer-control", action="store_true",
                   help="skip the answer-only loss diagnostics (saves a backward per step)")
    p.add_argument("--offload", action="store_true",
                   help="keep the previous gradient and initial weights on the CPU")
    p.add_argument("--limit", type=positive_int, default=None, help="use the first N samples")
    p.add_argument("--max-length", type=positive_int, default=512)
    p.add_argument("--chat-template", action="store_true",
                   help="wrap prompts in the tokenizer's chat template (instruct models)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp32", help="model weights dtype (fp32, bf16, ...)")
    p.set_defaults(func=cmd_train)


def _train_config(args: argparse.Namespace, model_dir: str) -> object:
    from thoughtgrad.experiments.dynamics import HF_TRAIN, TOY_TRAIN

    cfg_file = Path(model_dir) / "config.json"
    toy = False
    if cfg_file.is_file():
        try:
            toy = json.loads(cfg_file.read_text()).get("model_type") == "gpt_mini"
        except json.JSONDecodeError:
            toy = False
    base = TOY_TRAIN if toy else HF_TRAIN
    changes: dict[str, object] = {"steps": args.steps, "checkpoint_every": args.checkpoint_every,
                                  "on_nonfinite": args.on_nonfinite,
                                  "grad_clip": args.grad_clip or None}
    for name in ("batch_size", "lr", "seed"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    if toy and base.warmup_steps >= args.steps:
        changes["warmup_steps"] = max(1, args.steps // 10)
    return dataclasses.replace(base, **changes)


def cmd_train(args: argparse.Namespace) -> int:
    from thoughtgrad.cli.common import bar_factory
    from thoughtgrad.experiments.dynamics import (
        DynamicsConfig,
        ProbeConfig,
        dynamics_identity,
        run_dynamics,
    )
    from thoughtgrad.report.dynamics_summary import claims, summarize
    from thoughtgrad.runs.store import RunDir

    train_cfg = _train_config(args, args.model)
    probes = ProbeConfig(curvature_every=args.curvature_every,
                         curvature_method=args.curvature_method,
                         curvature_tol=args.curvature_tol,
                         curvature_max_iter=args.curvature_max_iter,
                         probe_batch_size=args.probe_batch, spike_tau=args.spike_tau,
                         spike_factor=args.spike_factor,
                         answer_control=not args.no_answer_control, offload=args.offload)
    cfg = DynamicsConfig(model=args.model, data=args.data, regime=args.regime,
                         train=train_cfg, probes=probes, device=args.device, dtype=args.dtype,
                         limit=args.limit, max_length=args.max_length,
                         chat_template=args.chat_template)
    run = RunDir.create(args.out, command="train", config=None, seed=train_cfg.seed,
                        identity=dynamics_identity(cfg))
    t0 = time.perf_counter()
    try:
        result, rows = run_dynamics(cfg, run,
                                    progress=bar_factory()(args.regime, train_cfg.steps))
    except BaseException as exc:
        run.set_status("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                       error=str(exc))
        raise
    if result.stopped_reason:
        run.set_status("failed", error=result.stopped_reason)
        raise UserError(f"training stopped: {result.stopped_reason}; the rows so far and the "
                        f"last good checkpoint are kept in {run.path}")
    run.set_status("completed", seconds=round(time.perf_counter() - t0, 1))
    summary = summarize(run.read("dynamics"))
    wide = summary.set_index("regime").T.rename_axis("metric").reset_index()
    wide.columns.name = None
    print_table(wide, title="training dynamics per regime (*_answer: the answer-only "
                            "control at the same weights)", floatfmt=".4g")
    ratios = claims(summary)
    if not ratios.empty:
        print_table(ratios, title="\nseed 000's claims, cot vs direct (ratio = cot / direct)",
                    floatfmt=".4g")
    info = run.manifest().get(f"dynamics_{args.regime}", {})
    failed = f", {info['failed']} could not be encoded (see dynamics_failed)" \
        if info.get("failed") else ""
    print(f"\n{info.get('samples', '?')} samples used{failed}")
    print(f"run directory: {run.path}  (tables: dynamics, layer_grad_norms)")
    return 0
