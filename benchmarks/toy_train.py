# SPDX-License-Identifier: MIT
"""Toy training throughput: the shared SFT loop vs a bare forward+backward+step.

All three run the same gpt_mini (seed-003 defaults: d=128, h=4, L=4) on the same batches
of the CoT regime (the longest texts), in one process, alternating:
  bare padded   the textbook step: logits for the whole right-padded batch, CE, AdamW
  bare packed   the same step with gpt_mini's ``lengths=`` path (no work on padding)
  thoughtgrad   ``train()``: batch assembly, learning-rate schedule, pre-clip gradient
                norm, clipping, callbacks, on the packed path
Prints tokens per second (non-pad tokens) for each and their ratios.
Run: ``python benchmarks/toy_train.py [--threads 2]``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from thoughtgrad.experiments.toy import ToyConfig, split_for, toy_batches
from thoughtgrad.models.gpt_mini import GPTMini
from thoughtgrad.tasks.toy import get_task
from thoughtgrad.train.sft import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--regime", default="cot", choices=["cot", "answer"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads [torch's]")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = ToyConfig()
    split = split_for(cfg)
    batches = toy_batches(get_task(cfg.task), split.train, args.regime,
                           batch_size=cfg.train.batch_size, seed=0)
    pre = [batches(s) for s in range(args.steps)]
    tokens = sum(int(b.attention_mask.sum()) for b in pre)

    def bare(packed: bool) -> float:
        model = GPTMini(cfg.model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        for b in pre:
            lengths = b.attention_mask.sum(1) if packed else None
            logits = model(b.input_ids, lengths=lengths).logits
            V = logits.shape[-1]
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), b.labels[:, 1:].reshape(-1),
                                   ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return time.perf_counter() - t0

    def loop() -> float:
        model = GPTMini(cfg.model)
        tc = TrainConfig(steps=args.steps, warmup_steps=5)
        t0 = time.perf_counter()
        train(tc, model, batches)
        return time.perf_counter() - t0

    bare(False), bare(True), loop()  # warm-up
    times: dict[str, list[float]] = {"bare padded": [], "bare packed": [], "thoughtgrad": []}
    for _ in range(args.repeats):  # alternate, so drifting machine load hits all alike
        times["bare padded"].append(bare(False))
        times["bare packed"].append(bare(True))
        times["thoughtgrad"].append(loop())
    best = {k: min(v) for k, v in times.items()}
    print(f"gpt_mini {GPTMini(cfg.model).num_params():,} params, {args.regime} regime, "
          f"{args.steps} steps x batch {cfg.train.batch_size}, torch threads "
          f"{torch.get_num_threads()}, best of {args.repeats}")
    for name, t in best.items():
        print(f"{name:12s}: {tokens / t:10,.0f} tokens/s  ({t / args.steps * 1e3:.1f} ms/step)")
    pad, pack, loop_t = best["bare padded"], best["bare packed"], best["thoughtgrad"]
    print(f"throughput ratio  bare packed / bare padded : {pad / pack:.2f}")
    print(f"throughput ratio  thoughtgrad / bare packed : {pack / loop_t:.3f}")
    print(f"throughput ratio  thoughtgrad / bare padded : {pad / loop_t:.2f}")


if __name__ == "__main__":
    main()
