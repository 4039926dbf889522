# SPDX-License-Identifier: MIT
"""``thoughtgrad train``: fine-tune under one supervision regime with the dynamics probes."""

from __future__ import annotations

import argparse
import time

from thoughtgrad.cli.common import (
    HelpFormatter,
    add_out_option,
    nonneg_float,
    positive_float,
    positive_int,
    print_table,
)
from thoughtgrad.cli.options import add_config_options, add_set_option, from_args
from thoughtgrad.errors import UserError

DESCRIPTION = """\
Fine-tune a model under one supervision regime and record its training dynamics (seed 000):
per step the loss, the pre-clip gradient norm and its spikes, per-layer gradient norms, the
cosine between consecutive gradients, the distance from the initial weights, and every
--curvature-every steps the Hessian's largest eigenvalue on a fixed probe batch. The
answer-only loss is measured at the same weights as a length control.

regimes (what the response, and so the loss, contains; the prompt is never supervised):
  cot     the full response: every reasoning step and the answer
  half    seed 000's "Direct": a seeded random half of each sample's reasoning steps
          removed, the remaining steps and the answer supervised (the same steps are
          dropped in every run); called `direct` before, which now always means a bare
          answer
  answer  the bare answer only (the toy lab's `direct`)

Run the command once per regime with the same --out to compare them; re-running a command
resumes from its last checkpoint. A directory holds one set of settings: every setting
that changes the numbers (model, data, lr, steps, batch, seed, probes, ...) must match
the runs already in it (only --regime, --device, --checkpoint-every and --offload may
differ). Tables: dynamics, layer_grad_norms.

Many processes: under `torchrun --nproc_per_node N -m thoughtgrad train ...` or
`accelerate launch --multi_gpu --num_processes N -m thoughtgrad train ...` (also on a CPU)
the run is data parallel (DistributedDataParallel; nccl with one GPU per process, gloo on
the CPU). Each step's --batch-size examples are the global batch, split among the
processes (at least one example each); the loss is the mean over all its response tokens,
so the gradient, the probes (computed on the all-reduced gradient; the curvature products
shared among the processes) and the tables are those of one process with the same batch.
Process 0 writes the tables, checkpoints and weights; a killed run resumes with any
number of processes.

examples:
  thoughtgrad train --model runs/toy/checkpoints/addition-n3000-cot --data toy:addition \\
      --regime half --steps 300 --out runs/dyn
  thoughtgrad train --model path/to/hf_model --data gsm8k_train_with_cot_gpt4o.json \\
      --regime cot --steps 1000 --out runs/dyn_llama
  torchrun --nproc_per_node 4 -m thoughtgrad train --model path/to/hf_model \\
      --data gsm8k_train_with_cot_gpt4o.json --regime cot --steps 1000 --batch-size 16 \\
      --out runs/dyn_llama
"""


def _grad_clip(text: str) -> float | None:
    """``--grad-clip``: a norm > 0, or 0 (or ``none``) for no clipping."""
    return None if text.lower() == "none" or nonneg_float(text) == 0 else float(text)


def register(sub: argparse._SubParsersAction) -> None:
    from thoughtgrad.dynamics.curvature import CURVATURE_METHODS
    from thoughtgrad.experiments.dynamics import (
        HF_TRAIN,
        REGIMES,
        TOY_TRAIN,
        DynamicsConfig,
        ProbeConfig,
    )

    p = sub.add_parser("train", help="fine-tune under a regime, recording training dynamics",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    base = DynamicsConfig(model="")
    add_config_options(p, base, only=("model", "data", "regime"),
                       required=("model", "data", "regime"), choices={"regime": REGIMES})
    add_config_options(
        p, TOY_TRAIN, prefix="train.", required=("steps",),
        only=("steps", "batch_size", "lr", "seed", "grad_clip", "checkpoint_every",
              "on_nonfinite"),
        types_={"steps": positive_int, "batch_size": positive_int, "lr": positive_float,
                "grad_clip": _grad_clip, "checkpoint_every": positive_int},
        choices={"on_nonfinite": ("stop", "skip")},
        defaults={name: f"{getattr(HF_TRAIN, name)} for HF models (seed 000), "
                        f"{getattr(TOY_TRAIN, name)} for gpt_mini (toy lab)"
                  for name in ("batch_size", "lr", "seed", "warmup_steps")
                  if getattr(HF_TRAIN, name) != getattr(TOY_TRAIN, name)})
    add_out_option(p, required=True, what="run directory (created or resumed)")
    add_config_options(
        p, ProbeConfig(), prefix="probes.", flags={"probe_batch_size": "--probe-batch"},
        only=("curvature_every", "curvature_method", "curvature_tol", "curvature_max_iter",
              "probe_batch_size", "spike_tau", "spike_factor", "answer_control", "offload"),
        types_={"curvature_every": positive_int, "curvature_tol": positive_float,
                "curvature_max_iter": positive_int, "probe_batch_size": positive_int,
                "spike_tau": nonneg_float, "spike_factor": positive_float},
        choices={"curvature_method": CURVATURE_METHODS})
    add_config_options(p, base, only=("limit", "max_length", "chat_template", "device", "dtype",
                                      "data_seed"),
                       types_={"limit": positive_int, "max_length": positive_int})
    add_set_option(p)
    p.set_defaults(func=cmd_train)


def build_config(args: argparse.Namespace):
    """The DynamicsConfig the options describe; the optimiser defaults are the model
    kind's (:data:`~thoughtgrad.experiments.dynamics.HF_TRAIN` or ``TOY_TRAIN``)."""
    from thoughtgrad.experiments.dynamics import HF_TRAIN, TOY_TRAIN, DynamicsConfig
    from thoughtgrad.models.gpt_mini import is_checkpoint

    train = TOY_TRAIN if is_checkpoint(args.model) else HF_TRAIN
    steps = getattr(args, "train.steps")
    cfg = DynamicsConfig(model=args.model, train=train.with_steps(steps))
    return from_args(cfg, args)


def cmd_train(args: argparse.Namespace) -> int:
    from thoughtgrad import distributed

    with distributed.launched() as world:  # torchrun / accelerate launch: data parallel
        return _train(args, world)


def _train(args: argparse.Namespace, world) -> int:
    from thoughtgrad import distributed
    from thoughtgrad.cli.common import bar_factory
    from thoughtgrad.experiments.dynamics import dynamics_identity, run_dynamics
    from thoughtgrad.report.dynamics_summary import claims, summarize
    from thoughtgrad.runs.store import RunDir

    cfg = build_config(args)
    train_cfg = cfg.train
    if not world.main:  # the run directory exists once rank 0 has created or checked it
        distributed.barrier(world)
        result, _ = run_dynamics(cfg, RunDir(args.out), world=world)
        return 2 if result.stopped_reason else 0
    run = RunDir.create(args.out, command="train", config=None, seed=train_cfg.seed,
                        identity=dynamics_identity(cfg))
    distributed.barrier(world)
    t0 = time.perf_counter()
    with run.recording():
        result, rows = run_dynamics(cfg, run, world=world,
                                    progress=bar_factory()(cfg.regime, train_cfg.steps))
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
        print_table(ratios, title="\nseed 000's claims, cot vs half (ratio = cot / half)",
                    floatfmt=".4g")
    info = run.manifest().get(f"dynamics_{cfg.regime}", {})
    failed = f", {info['failed']} could not be encoded (see dynamics_failed)" \
        if info.get("failed") else ""
    print(f"\n{info.get('samples', '?')} samples used{failed}")
    print(f"run directory: {run.path}  (tables: dynamics, layer_grad_norms)")
    return 0
