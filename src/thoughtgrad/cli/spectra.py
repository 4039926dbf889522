# SPDX-License-Identifier: MIT
"""``thoughtgrad spectra``: per-sample, per-layer gradient spectra of a causal LM over data files.

    thoughtgrad spectra --model DIR_OR_HUB_ID --data FILE [--data FILE ...] --out RUN_DIR

Writes ``RUN_DIR/spectra.parquet/`` (one row per sample x layer x matrix, appended in
shards), ``spectra_samples.parquet/`` (one row per sample), ``spectra_failed.parquet/`` and
``manifest.json``. Re-running the same command resumes: finished samples are skipped,
failed ones are tried again. A run that measures no sample at all is an error (exit 2).
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
final answer carries loss), --init random (the same architecture, untrained). Each control
is its own run: give it a new --out (a run directory refuses other settings) and pass
all the run directories to `thoughtgrad compare` / `thoughtgrad report`.

With --loss-span answer, the answer is found by its shape from the prompt (an option
letter, Sentence A/B, yes/no, one of the listed options, a number), first in the marked
answer ("The final answer is", \\boxed{}, ####, "Answer:"), then in the last line, then
anywhere; and when a dataset's _no_cot file is given with its CoT files (same folder),
as that file's bare answer found in the long response. A response that never states
its answer is recorded as failed.
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
                   help="comma-separated roles among q,k,v,o,gate,up,down and the fused stored "
                        "weights qkv,gate_up (default: q,k,v,o,gate,up,down)")
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
                        "match), instead of the default answer finder described above")
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
    r.add_argument("--attn-implementation", choices=("eager", "sdpa"), default="eager",
                   help="attention kernel: eager (exact in any dtype) or sdpa (faster; same "
                        "numbers up to rounding, so a run may resume with the other)")
    r.add_argument("--trust-remote-code", action="store_true",
                   help="allow a hub model's own Python code to run (off by default)")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    from thoughtgrad.experiments.spectra_config import SpectraConfig

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
        include_fused=args.include_fused, attn_implementation=args.attn_implementation)


class Progress:
    """Samples done on stderr: a tqdm bar on a terminal, else a plain line every tenth of
    the run (logs, CI and pipes are never silent)."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=0, unit="sample", desc="spectra", dynamic_ncols=True,
                        file=sys.stderr, disable=not sys.stderr.isatty())
        self.total, self.done, self.next_line = 0, 0, 0
        self.start = time.perf_counter()

    def reset(self, total: int) -> None:
        self.bar.reset(total=total)
        self.total, self.done = total, 0
        self.next_line = max(1, total // 10)
        if self.bar.disable:
            print(f"spectra: {total} samples to measure", file=sys.stderr, flush=True)

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n
        if self.bar.disable and self.total and self.done >= self.next_line:
            rate = self.done / max(time.perf_counter() - self.start, 1e-9)
            print(f"spectra: {self.done}/{self.total} samples ({100 * self.done / self.total:.0f}"
                  f"%, {rate:.2f} samples/s)", file=sys.stderr, flush=True)
            while self.next_line <= self.done:
                self.next_line += max(1, self.total // 10)

    def close(self) -> None:
        self.bar.close()


def run(args: argparse.Namespace) -> int:
    from thoughtgrad.experiments.spectra_run import check_resume, run_spectra
    from thoughtgrad.runs.store import RunDir

    cfg = build_config(args)
    check_resume(cfg, RunDir(args.out))  # data bytes, before the manifest is touched
    run_dir = RunDir.create(args.out, command="spectra", config=cfg, seed=cfg.seed,
                            identity=cfg.identity())
    bar = Progress()
    start = time.perf_counter()
    try:
        summary = run_spectra(cfg, run_dir, progress=bar.update, on_total=bar.reset)
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
