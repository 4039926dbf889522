# SPDX-License-Identifier: MIT
"""Toy training throughput: the shared SFT loop vs a bare forward+backward+step.

Both run the same gpt_mini (seed-003 defaults: d=128, h=4, L=4) on the same batches of
the CoT regime (the longest texts); the loop adds batch assembly, the learning-rate
schedule, the pre-clip gradient norm, clipping and callbacks. Prints tokens per second
(non-pad tokens) for each and their ratio. Run: ``python benchmarks/toy_train.py``.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from thoughtgrad.experiments.toy import ToyConfig, make_batches, split_for
from thoughtgrad.models.gpt_mini import GPTMini
from thoughtgrad.tasks.toy import get_task
from thoughtgrad.train.sft import TrainConfig, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--regime", default="cot", choices=["cot", "answer"])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    cfg = ToyConfig()
    split = split_for(cfg)
    batches = make_batches(get_task(cfg.task), split.train, args.regime,
                           batch_size=cfg.train.batch_size, seed=0)
    pre = [batches(s) for s in range(args.steps)]
    tokens = sum(int(b.attention_mask.sum()) for b in pre)

    def bare() -> float:
        model = GPTMini(cfg.model)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        for b in pre:
            logits = model(b.input_ids)
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

    bare(), loop()  # warm-up
    tb = min(bare() for _ in range(args.repeats))
    tl = min(loop() for _ in range(args.repeats))
    print(f"gpt_mini {GPTMini(cfg.model).num_params():,} params, {args.regime} regime, "
          f"{args.steps} steps x batch {cfg.train.batch_size}, torch threads "
          f"{torch.get_num_threads()}")
    for name, t in (("bare fwd+bwd+step", tb), ("thoughtgrad train", tl)):
        print(f"{name} : {tokens / t:10,.0f} tokens/s  ({t / args.steps * 1e3:.1f} ms/step)")
    print(f"ratio loop/bare throughput: {tb / tl:.3f}")


if __name__ == "__main__":
    main()
