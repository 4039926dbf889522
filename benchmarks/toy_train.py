# SPDX-License-Identifier: MIT
"""Toy training throughput (issue 12): today's loop vs the variants, side by side.

Part 1, one model's loop (``train()`` on the CoT regime, the longest texts, gpt_mini at
the seed-003 defaults), in one process, repetitions interleaved, medians reported:
  today (2 thr)    the loop as ``thoughtgrad toy`` ran it before: torch's default threads
  1 thread         the same loop on one torch thread (``ToyConfig.threads``, the default)
  compiled (1 thr) ``torch.compile`` (inductor) of model + loss, with ``--compile``; its
                   compile time is printed apart and is not in the median
  bare padded/packed  a bare forward+backward+AdamW step without the loop's extras, on
                   1 thread, for reference (padded batch; gpt_mini's ``lengths=`` path)

Part 2, what ``thoughtgrad toy`` does with its defaults (both models, direct then CoT):
  sequential       both regimes one after the other at torch's default threads (today)
  parallel         both regimes at once in two worker processes, 1 thread each (default)
wall seconds for ``--stack-steps`` steps per model, worker start-up included.

Part 3 (``--baseline-src PATH``), the same ``thoughtgrad toy`` command (``--stack-steps``
steps per model, both models, a small evaluation) run by another checkout's ``src`` (e.g.
the code an issue was measured on) and by this one, each in a fresh process, alternating:
training tokens/s per model from each run's own table, and wall time.

Part 1 also times ``bf16 autocast`` (``torch.autocast`` on the CPU with bfloat16: the
GEMMs in bf16, weights and AdamW in fp32), a candidate that would change the numerics;
it is reported, not used.

Peak FLOP rate: a 1024^3 fp32 GEMM's GFLOP/s measured in the same run on 1 and on all
threads (median of repeats, between the variants); a variant's fraction of peak is its
model FLOP rate (3 x forward FLOPs of the real tokens, ``GPTMini.flops_per_token``) over
the larger of the two GEMM rates (on a quiet machine, the all-thread one). The machine
may be shared: read ratios, not absolute rates.
Run: ``python benchmarks/toy_train.py [--compile] [--part 1|2|3] [--baseline-src PATH]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from thoughtgrad.experiments.toy import ToyConfig, split_for, toy_batches, train_regimes
from thoughtgrad.models.gpt_mini import GPTMini
from thoughtgrad.tasks.toy import get_task
from thoughtgrad.train.sft import TrainConfig, lm_loss, logits_of, train

GEMM_N = 1024


def gemm_gflops(threads: int, repeats: int = 5) -> float:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(GEMM_N, GEMM_N), torch.randn(GEMM_N, GEMM_N)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    torch.set_num_threads(before)
    return 2 * GEMM_N**3 / statistics.median(times) / 1e9


def part_one(args: argparse.Namespace, cfg: ToyConfig, all_threads: int) -> None:
    split = split_for(cfg)
    batches = toy_batches(get_task(cfg.task), split.train, "cot",
                           batch_size=cfg.train.batch_size, seed=0)
    pre = [batches(s) for s in range(args.steps)]
    tokens = sum(int(b.attention_mask.sum()) for b in pre)
    model_flops = 3 * sum(int(b.attention_mask.sum()) * GPTMini(cfg.model).flops_per_token(
        b.input_ids.shape[1]) for b in pre)
    tc = TrainConfig(steps=args.steps, warmup_steps=5)

    def loop(threads: int, loss_fn=None) -> float:
        torch.set_num_threads(threads)
        model = GPTMini(cfg.model)
        t0 = time.perf_counter()
        train(tc, model, lambda s: pre[s], loss_fn=loss_fn)
        return time.perf_counter() - t0

    def bare(packed: bool) -> float:
        torch.set_num_threads(1)
        model = GPTMini(cfg.model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        for b in pre:
            logits = model(b.input_ids,
                           lengths=b.attention_mask.sum(1) if packed else None).logits
            V = logits.shape[-1]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), b.labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    def bf16_loss(model, b):  # the loop's own loss, its forward under bf16 autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = logits_of(model, b)
        return lm_loss(logits.float(), b.labels)

    variants = {f"today ({all_threads} thr)": lambda: loop(all_threads),
                "1 thread": lambda: loop(1),
                f"bf16 autocast ({all_threads} thr)": lambda: loop(all_threads, bf16_loss),
                "bare padded (1 thr)": lambda: bare(False),
                "bare packed (1 thr)": lambda: bare(True)}
    if args.compile:
        def packed_loss(model, ids, labels, lengths):
            return lm_loss(model(ids, lengths=lengths).logits, labels)

        compiled = torch.compile(packed_loss)

        def compiled_fn(model, b):
            return compiled(model, b.input_ids, b.labels, b.attention_mask.sum(1))

        t0 = time.perf_counter()
        loop(1, compiled_fn)  # first run: compiles (forward and backward)
        print(f"torch.compile: first run of {args.steps} steps took "
              f"{time.perf_counter() - t0:.1f} s (compile included)")
        variants["compiled (1 thr)"] = lambda: loop(1, compiled_fn)
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    gemm: dict[int, list[float]] = {1: [], all_threads: []}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits all alike
        for name, fn in variants.items():
            times[name].append(fn())
        for t in gemm:
            gemm[t].append(gemm_gflops(t))
    peak = {t: statistics.median(v) for t, v in gemm.items()}
    top = max(peak.values())  # on a busy machine more threads can be slower
    print(f"\n== part 1: one model's loop, cot regime, {args.steps} steps x batch "
          f"{cfg.train.batch_size} ({tokens / args.steps:,.0f} real tokens/step), median of "
          f"{args.repeats}, load average {os.getloadavg()[0]:.1f}")
    print(f"peak estimate: fp32 GEMM {GEMM_N}^3  1 thread {peak[1]:.1f} GFLOP/s, "
          f"{all_threads} threads {peak[all_threads]:.1f} GFLOP/s")
    base = statistics.median(times[f"today ({all_threads} thr)"])
    print(f"{'variant':20s} {'tokens/s':>10s} {'ms/step':>8s} {'x today':>8s} "
          f"{'GFLOP/s':>8s} {'of peak':>8s}")
    for name, ts in times.items():
        t = statistics.median(ts)
        rate = model_flops / t / 1e9
        print(f"{name:20s} {tokens / t:10,.0f} {t / args.steps * 1e3:8.1f} {base / t:8.2f} "
              f"{rate:8.1f} {rate / top:8.0%}")


def part_two(args: argparse.Namespace, cfg: ToyConfig, all_threads: int) -> None:
    steps = args.stack_steps
    base = dataclasses.replace(cfg, device="cpu", train=dataclasses.replace(
        cfg.train.with_steps(steps), checkpoint_every=500))
    split = split_for(base)
    setups = {f"sequential ({all_threads} thr)": dataclasses.replace(base, threads=None,
                                                                    parallel=False),
              "parallel (2 x 1 thr)": dataclasses.replace(base, threads=1, parallel=True)}
    times: dict[str, list[float]] = {k: [] for k in setups}
    per_model: dict[str, dict[str, list[float]]] = {k: {} for k in setups}
    for _ in range(args.stack_repeats):
        for name, setup in setups.items():
            torch.set_num_threads(all_threads)
            with tempfile.TemporaryDirectory() as tmp:
                dirs = {r: Path(tmp) / r for r in setup.regimes}
                t0 = time.perf_counter()
                for regime, _, result in train_regimes(setup, split, dirs):
                    per_model[name].setdefault(regime, []).append(result.seconds)
                times[name].append(time.perf_counter() - t0)
    print(f"\n== part 2: thoughtgrad toy's training stage, regimes {', '.join(base.regimes)}, "
          f"{steps} steps each, median of {args.stack_repeats}, load average "
          f"{os.getloadavg()[0]:.1f}")
    ref = statistics.median(times[f"sequential ({all_threads} thr)"])
    for name, ts in times.items():
        t = statistics.median(ts)
        models = ", ".join(f"{r} {statistics.median(v):.1f} s"
                           for r, v in per_model[name].items())
        print(f"{name:22s} wall {t:7.1f} s  x{ref / t:.2f} vs sequential   (training: {models})")
    print(f"(worker start-up, a few seconds, is in the parallel wall; the default run has "
          f"{cfg.train.steps} steps per model)")


def part_three(args: argparse.Namespace) -> None:
    import re
    import subprocess
    import sys

    here = Path(__file__).resolve().parents[1] / "src"
    srcs = {"baseline": Path(args.baseline_src).resolve(), "this checkout": here}
    for src in srcs.values():
        if not (src / "thoughtgrad" / "__init__.py").is_file():
            raise SystemExit(f"--baseline-src: {src} holds no thoughtgrad package")
    runner = ("import sys; from thoughtgrad.cli import main; "
              "sys.argv = ['thoughtgrad', *sys.argv[1:]]; main()")
    rates: dict[str, dict[str, list[float]]] = {k: {} for k in srcs}
    walls: dict[str, list[float]] = {k: [] for k in srcs}
    row = re.compile(r"^\s*\S+\s+\d+\s+(\w+)\s+[\d.]+\s+([\d.]+)\s", re.M)
    for _ in range(args.stack_repeats):
        for name, src in srcs.items():
            with tempfile.TemporaryDirectory() as tmp:
                env = {**os.environ, "PYTHONPATH": str(src)}
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", runner, "toy", "--steps",
                                      str(args.stack_steps), "--eval-per-k", "20", "--out",
                                      str(Path(tmp) / "toy")], env=env, capture_output=True,
                                     text=True, check=True).stdout
                walls[name].append(time.perf_counter() - t0)
            for regime, rate in row.findall(out):
                rates[name].setdefault(regime, []).append(float(rate))
    print(f"\n== part 3: `thoughtgrad toy --steps {args.stack_steps}` by two checkouts, "
          f"median of {args.stack_repeats}, load average {os.getloadavg()[0]:.1f}")
    base = {r: statistics.median(v) for r, v in rates["baseline"].items()}
    for name in srcs:
        per = ", ".join(f"{r} {statistics.median(v):,.0f} tok/s "
                        f"(x{statistics.median(v) / base[r]:.2f})" for r, v in rates[name].items())
        print(f"{name:14s} wall {statistics.median(walls[name]):6.1f} s   {per}   [{srcs[name]}]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["1", "2", "3", "all"], default="all",
                    help="all = 1 and 2, and 3 when --baseline-src is given")
    ap.add_argument("--steps", type=int, default=40, help="steps per part-1 run [40]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stack-steps", type=int, default=200, help="steps per model, part 2")
    ap.add_argument("--stack-repeats", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="part 1: add torch.compile")
    ap.add_argument("--baseline-src", default=None,
                    help="part 3: another checkout's src directory to run side by side")
    args = ap.parse_args()
    all_threads = torch.get_num_threads()
    cfg = ToyConfig()
    print(f"gpt_mini {GPTMini(cfg.model).num_params():,} params; torch {torch.__version__}, "
          f"{all_threads} threads by default, {os.cpu_count()} CPUs")
    if args.part in ("1", "all"):
        part_one(args, cfg, all_threads)
    if args.part in ("2", "all"):
        part_two(args, cfg, all_threads)
    if args.part == "3" or (args.part == "all" and args.baseline_src):
        if not args.baseline_src:
            raise SystemExit("--part 3 needs --baseline-src")
        part_three(args)


if __name__ == "__main__":
    main()
