# SPDX-License-Identifier: MIT
"""Constants of docs/scaling.md's cost model of one spectra sample, measured on this CPU.

For small random Llamas (no GQA, vocab 512, one thread) and one sample of T tokens (first
third prompt), times (medians of ``--reps``):
  fb     a forward and a backward with weight gradients (a plain training step's gradient);
  spec   ``layer_spectra`` (fast method): the measurement itself;
and fits (least squares through 0)  fb = a * T * P_blocks  and
spec - fb = b * T * min(T, d) * S,  with P_blocks = L (4 d^2 + 3 d f) the block parameters
and S = L (4 * 2d + 3 (d + f)) the summed m + n of the seven matrices (a QR of a T x m
factor costs ~ T m min(T, m)). Prints the raw rows as CSV and the fitted constants.

    OMP_NUM_THREADS=1 python benchmarks/cost_model.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

SHAPES = [  # (hidden d, layers L, MLP width f, tokens T)
    (128, 2, 344, 128), (128, 2, 344, 512), (256, 2, 688, 128), (256, 2, 688, 512),
    (256, 4, 688, 256), (512, 2, 1376, 256), (384, 2, 1024, 1024),
]


def llama(d: int, layers: int, f: int) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=512, hidden_size=d, intermediate_size=f,
                      num_hidden_layers=layers, num_attention_heads=max(1, d // 64),
                      num_key_value_heads=max(1, d // 64), max_position_embeddings=4096)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).eval()


def time_one(model, tokens: int, reps: int) -> tuple[float, float]:
    from thoughtgrad.spectra import layer_spectra

    ids = torch.randint(0, 512, (1, tokens))
    labels = ids.clone()
    labels[:, : tokens // 3] = -100
    fb, spec = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = model(input_ids=ids, labels=labels, use_cache=False)
        out.loss.backward()
        fb.append(time.perf_counter() - t0)
        model.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        layer_spectra(model, ids, labels)
        spec.append(time.perf_counter() - t0)
    return statistics.median(fb), statistics.median(spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    print("d,L,f,T,P_blocks,fb_s,spec_s")
    for d, layers, f, T in SHAPES:
        model = llama(d, layers, f)
        fb, spec = time_one(model, T, args.reps)
        p_blocks = layers * (4 * d * d + 3 * d * f)
        rows.append((d, layers, f, T, p_blocks, fb, spec))
        print(f"{d},{layers},{f},{T},{p_blocks},{fb:.4f},{spec:.4f}", flush=True)
    arr = np.array(rows, dtype=float)
    d, L, f, T, P, fb, spec = arr.T
    a = float(np.sum(fb * T * P) / np.sum((T * P) ** 2))
    S = L * (4 * 2 * d + 3 * (d + f))  # q k v o: m + n = 2d; gate up down: d + f
    x = T * np.minimum(T, d) * S
    b = float(np.sum((spec - fb) * x) / np.sum(x ** 2))
    print(f"a (forward+backward) = {a:.3e} s per token*block-parameter")
    print(f"b (statistics)       = {b:.3e} s per token*min(T,d)*(m+n)")
    print(f"spectra / plain gradient: median {np.median(spec / fb):.2f}x")


if __name__ == "__main__":
    main()
