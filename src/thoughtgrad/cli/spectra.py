# SPDX-License-Identifier: MIT
"""``thoughtgrad spectra``: per-sample, per-layer gradient spectra of a causal LM over data files.

    thoughtgrad spectra --model DIR_OR_HUB_ID --data FILE [--data FILE ...] --out RUN_DIR

Writes ``RUN_DIR/spectra.parquet/`` (one row per sample x layer x matrix, appended in
shards), ``spectra_failed.parquet/`` and ``manifest.json``. Re-running the same command
resumes: finished samples are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time

from thoughtgrad.cli.common import HelpFormatter, positive_int
from thoughtgrad.errors import UserError

DESCRIPTION = """\
Measure, for every sample and every Q/K/V/O and MLP weight matrix of every layer, the
singular values of that sample's loss gradient (the Layer_Gradient paper's measurement,
computed exactly and batched). Each row carries the sample's labels (source file, CoT
level, response kind, condition) and the settings it was computed with.

Condition labels are inferred from the shared data's file names unless --condition is
given: _no_cot -> none, _with_cot -> simplified, _with_cot_gpt4o -> detailed; a folder
named *wrong_answer_shuffle* -> irrelevant responses, else correct.

Confound controls: --loss-reduction sum (no 1/length factor), --loss-span answer (only the
final answer carries loss), --init random (the same architecture, untrained).
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spectra", help="layer-wise gradient spectra over data files",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    g = p.add_argument_group("inputs and output")
    g.add_argument("--model", required=True,
                   help="a local model directory (config + safetensors) or a hub id")
    g.add_argument("--data", action="append", required=True, metavar="FILE",
                   help="Alpaca-style .json array or .jsonl (instruction, input, output), or any "
                        ".json/.jsonl/.parquet with --prompt-field/--response-field; repeatable")
    g.add_argument("--out", required=True, metavar="RUN_DIR",
                   help="run directory; re-running with the same settings resumes it")
    g.add_argument("--limit", type=positive_int, default=None, metavar="N",
                   help="only the first N records of each file (raise it later to extend "
                        "the same run)")
    g.add_argument("--condition", action="append", default=None,
                   help="condition label instead of the one inferred from file names: once "
                        "for all files or once per --data, in order")
    g.add_argument("--prompt-field", default=None,
                   help="field holding the prompt (default: instruction + input)")
    g.add_argument("--response-field", default=None,
                   help="field holding the response (default: output)")

    m = p.add_argument_group("measurement")
    m.add_argument("--roles", type=lambda s: tuple(r.strip() for r in s.split(",") if r.strip()),
                   default=None,
                   help="comma-separated roles among q,k,v,o,gate,up,down (default: all)")
    m.add_argument("--method", choices=("fast", "reference"), default="fast",
                   help="fast: one batched backward, exact spectra from small QR cores; "
                        "reference: the paper's per-sample backward + full SVD (slow)")
    m.add_argument("--include-fused", action="store_true",
                   help="also report fused stored weights (qkv, gate_up) whole")
    m.add_argument("--loss-reduction", choices=("mean", "sum"), default="mean",
                   help="per-sample loss: mean over loss tokens (the paper's) or sum")
    m.add_argument("--loss-span", choices=("response", "answer"), default="response",
                   help="tokens carrying loss: the whole response, or only the final answer")
    m.add_argument("--answer-pattern", default=None, metavar="REGEX",
                   help="regex locating the answer for --loss-span answer (group 1, last "
                        "match); default patterns cover 'The final answer is X', \\boxed{X}, "
                        "'So the answer is X', 'Answer: X', else the last line")
    m.add_argument("--chat-template", action="store_true",
                   help="encode with the tokenizer's chat template (system + user turn, "
                        "generation prompt) as for instruct models; default: prompt + \\n + "
                        "response as for base models")
    m.add_argument("--system-prompt", default=None,
                   help="system turn with --chat-template (default: 'You are a helpful "
                        "assistant.')")
    m.add_argument("--max-length", type=positive_int, default=None,
                   help="token bound per sample; longer responses are truncated from the end "
                        "and counted in the manifest (default: the model's maximum)")
    m.add_argument("--init", choices=("pretrained", "random"), default="pretrained",
                   help="random: re-initialise the same architecture (seeded), the "
                        "untrained-model control")
    m.add_argument("--seed", type=int, default=0, help="seed for --init random")

    r = p.add_argument_group("resources")
    r.add_argument("--batch-tokens", type=positive_int, default=4096,
                   help="memory bound: padded tokens per batch (samples x longest)")
    r.add_argument("--dtype", default="fp32", help="model weights: fp32, bf16, fp16, fp64")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    r.add_argument("--trust-remote-code", action="store_true",
                   help="allow a hub model's own Python code to run (off by default)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    from thoughtgrad.experiments.spectra_run import SpectraConfig

    return SpectraConfig(
        model=args.model, data=tuple(args.data), roles=args.roles,
        batch_tokens=args.batch_tokens, max_length=args.max_length, dtype=args.dtype,
        device=args.device, method=args.method, limit=args.limit,
        chat_template=args.chat_template, system_prompt=args.system_prompt,
        trust_remote_code=args.trust_remote_code,
        condition=tuple(args.condition) if args.condition else None,
        prompt_field=args.prompt_field, response_field=args.response_field,
        loss_reduction=args.loss_reduction, loss_span=args.loss_span,
        answer_pattern=args.answer_pattern, init=args.init, seed=args.seed,
        include_fused=args.include_fused)


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from thoughtgrad.experiments.spectra_run import check_resume, run_spectra
    from thoughtgrad.report.store import RunDir

    cfg = build_config(args)
    check_resume(cfg, RunDir(args.out))  # before the manifest is touched
    run_dir = RunDir.create(args.out, command="spectra", config=cfg, seed=cfg.seed)
    bar = tqdm(total=0, unit="sample", desc="spectra", dynamic_ncols=True, file=sys.stderr,
               disable=not sys.stderr.isatty())

    def on_total(n: int) -> None:
        bar.reset(total=n)

    start = time.perf_counter()
    try:
        summary = run_spectra(cfg, run_dir, progress=bar.update, on_total=on_total)
    except KeyboardInterrupt:
        bar.close()
        run_dir.set_status("interrupted")
        raise
    except UserError as exc:
        bar.close()
        run_dir.set_status("failed", error=str(exc))
        raise
    bar.close()
    seconds = time.perf_counter() - start
    run_dir.set_status("completed", seconds=round(seconds, 3))
    print(f"{summary.samples} samples: {summary.already_done} already done, "
          f"{summary.computed} measured ({summary.rows} rows), {summary.failed} failed, "
          f"{summary.truncated} truncated; {seconds:.1f} s -> {run_dir.table_path('spectra')}")
    return 0
