# SPDX-License-Identifier: MIT
"""lambda_max of the same model and batch by PyHessian, our power iteration and our Lanczos.

PyHessian (Yao et al. 2020) is the anchor users know; install it for this benchmark only::

    .venv/bin/pip install pyhessian
    .venv/bin/python benchmarks/hessian.py --model runs/sweep/checkpoints/addition-n3000-cot

Without ``--model`` a seeded random-init gpt_mini (d=128, L=4) is used; note that at random
init the largest-*magnitude* eigenvalue can be negative, which power iteration (PyHessian's
and ours) then returns, while Lanczos returns the largest algebraic one. A trained
checkpoint is the meaningful case. The loss is the mean response-token cross-entropy over
``--samples`` held-out toy addition problems (CoT responses). HVPs are counted by wrapping
PyHessian's own ``hessian_vector_product``; the reference value is a tightly converged
Lanczos run. Prints one table.
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="gpt_mini checkpoint directory")
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--tol", type=float, default=1e-4, help="relative stopping tolerance")
    ap.add_argument("--max-iter", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from thoughtgrad.dynamics.attention import math_attention
    from thoughtgrad.dynamics.hessian import top_eigenvalues
    from thoughtgrad.experiments.dynamics_data import probe_batches, toy_examples
    from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
    from thoughtgrad.tasks.toy import TOKENIZER
    from thoughtgrad.train.sft import lm_loss

    if args.model:
        model = GPTMini.load(args.model)
        name = args.model
    else:
        model = GPTMini(GPTMiniConfig(vocab_size=TOKENIZER.vocab_size, seed=args.seed))
        name = "random-init gpt_mini"
    model.eval()
    examples = toy_examples(args.model or "", "addition", "cot", seed=args.seed,
                            limit=args.samples)
    batch, _ = probe_batches(examples, args.samples, TOKENIZER.pad_id)
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)

    def loss_fn() -> torch.Tensor:
        return lm_loss(model(batch.input_ids).logits, batch.labels)

    rows = []
    with math_attention():
        ref = top_eigenvalues(loss_fn, params, method="lanczos", tol=1e-9,
                              max_iter=args.max_iter, seed=args.seed)
        try:  # the package re-exports the class `hessian` over its module of that name
            import importlib
            import sys

            importlib.import_module("pyhessian.hessian")
            ph = sys.modules["pyhessian.hessian"]
        except ImportError:
            ph = None
        if ph is not None:
            calls = {"n": 0}
            original = ph.hessian_vector_product

            def counted(gradsH, params_, v):  # noqa: N803 - PyHessian's argument name
                calls["n"] += 1
                return original(gradsH, params_, v)

            ph.hessian_vector_product = counted
            torch.manual_seed(args.seed)
            t0 = time.perf_counter()
            comp = ph.hessian(model, lambda logits, labels: lm_loss(logits, labels),
                              data=(batch.input_ids, batch.labels), cuda=False)
            eig, _ = comp.eigenvalues(maxIter=args.max_iter, tol=args.tol, top_n=1)
            secs = time.perf_counter() - t0
            ph.hessian_vector_product = original
            model.zero_grad(set_to_none=True)
            rows.append({"method": "PyHessian power", "lambda_max": float(eig[0]),
                         "hvps": calls["n"], "seconds": secs})
        for method in ("power", "lanczos"):
            t0 = time.perf_counter()
            res = top_eigenvalues(loss_fn, params, method=method, tol=args.tol,
                                  max_iter=args.max_iter, seed=args.seed)
            rows.append({"method": f"thoughtgrad {method}", "lambda_max": res.eigenvalues[0],
                         "hvps": res.hvps, "seconds": time.perf_counter() - t0})
    df = pd.DataFrame(rows)
    df["rel_diff_vs_reference"] = (df["lambda_max"] - ref.eigenvalues[0]).abs() / \
        abs(ref.eigenvalues[0])
    if ph is not None:
        anchor = df.loc[0, "lambda_max"]
        df["rel_diff_vs_pyhessian"] = (df["lambda_max"] - anchor).abs() / abs(anchor)
    print(f"model: {name} ({n_params:,} parameters); batch: {args.samples} toy addition "
          f"samples, {batch.n_tokens} loss tokens; tol {args.tol}; threads {args.threads}")
    print(f"reference (Lanczos, tol 1e-9): lambda_max = {ref.eigenvalues[0]:.6g} "
          f"({ref.hvps} HVPs)")
    if ph is None:
        print("PyHessian is not installed (pip install pyhessian): its row is missing")
    with pd.option_context("display.width", 200, "display.float_format", "{:.6g}".format):
        print(df.to_string(index=False))


if __name__ == "__main__":
    main()
