# SPDX-License-Identifier: MIT
"""``thoughtgrad hessian``: top Hessian eigenvalues and trace of the response-token loss."""

from __future__ import annotations

import argparse
import json
import math

from thoughtgrad.cli.common import (
    HelpFormatter,
    nonneg_int,
    positive_float,
    positive_int,
    print_table,
)

DESCRIPTION = """\
Top-k eigenvalues (largest algebraic; Lanczos with full reorthogonalisation, or power
iteration with deflation) and the Hutchinson trace of the Hessian of the mean
response-token cross-entropy (nats) over the given samples, at the model's weights.
With --per-layer, the same for each block's parameters alone (the Hessian's diagonal
blocks; layer -1 = embeddings, final norm and LM head).

--json prints exactly one object on stdout:
  {"eigenvalues": [...], "trace": T, "hvps": N}   (+ "layers": [...] with --per-layer)

examples:
  thoughtgrad hessian --model runs/dyn/model-cot --data toy:addition --top-k 3
  thoughtgrad hessian --model path/to/hf --data gsm8k_train_with_cot_gpt4o.json --limit 8 --json
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hessian", help="top Hessian eigenvalues and trace of the loss",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("--model", required=True, help="gpt_mini checkpoint or HF model dir / id")
    p.add_argument("--data", required=True, help="toy:<task> or an Alpaca-style JSON/JSONL file")
    p.add_argument("--regime", choices=["cot", "direct", "answer"], default="cot",
                   help="response variant (cot = the data's responses unchanged)")
    p.add_argument("--loss-span", choices=["response", "answer"], default="response",
                   help="which response tokens carry the loss")
    p.add_argument("--top-k", type=positive_int, default=1)
    p.add_argument("--method", choices=["lanczos", "power"], default="lanczos")
    p.add_argument("--tol", type=positive_float, default=1e-4,
                   help="relative change of the estimates that stops the iteration (> 0)")
    p.add_argument("--max-iter", type=positive_int, default=100)
    p.add_argument("--trace-samples", type=nonneg_int, default=20,
                   help="Rademacher vectors for the Hutchinson trace (0 = skip)")
    p.add_argument("--per-layer", action="store_true", help="also each block on its own")
    p.add_argument("--limit", type=positive_int, default=8, help="samples in the loss")
    p.add_argument("--max-length", type=positive_int, default=512)
    p.add_argument("--chat-template", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_hessian)


def cmd_hessian(args: argparse.Namespace) -> int:
    from thoughtgrad.config import resolve_device
    from thoughtgrad.dynamics.attention import hvp_attention
    from thoughtgrad.dynamics.hessian import hutchinson_trace, top_eigenvalues
    from thoughtgrad.dynamics.probes import default_loss, eval_mode, layer_index
    from thoughtgrad.experiments.dynamics_data import load_examples, probe_batches
    from thoughtgrad.models.hf import load_model

    device = resolve_device(args.device)
    model = load_model(args.model, device=str(device))
    examples, pad_id, _ = load_examples(model, args.model, args.data, args.regime,
                                        seed=args.seed, limit=args.limit,
                                        max_length=args.max_length,
                                        chat_template=args.chat_template)
    full, answer = probe_batches(examples, len(examples), pad_id)
    batch = (answer if args.loss_span == "answer" else full).to(device)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]

    def measure(params: list) -> dict:
        k = min(args.top_k, sum(p.numel() for p in params))
        res = top_eigenvalues(lambda: default_loss(model, batch), params, k=k,
                              method=args.method, tol=args.tol, max_iter=args.max_iter,
                              seed=args.seed)
        out = {"eigenvalues": res.eigenvalues, "trace": math.nan, "hvps": res.hvps,
               "converged": res.converged}
        if args.trace_samples > 0:
            tr = hutchinson_trace(lambda: default_loss(model, batch), params,
                                  n_samples=args.trace_samples, seed=args.seed)
            out["trace"], out["hvps"] = tr.trace, res.hvps + tr.hvps
            out["trace_stderr"] = tr.stderr
        return out

    with eval_mode(model), hvp_attention(model):
        whole = measure([p for _, p in named])
        layers = []
        if args.per_layer:
            for layer in sorted({layer_index(n) for n, _ in named}):
                r = measure([p for n, p in named if layer_index(n) == layer])
                layers.append({"layer": layer, **r})
    if args.json:
        obj = {"eigenvalues": whole["eigenvalues"],
               "trace": None if math.isnan(whole["trace"]) else whole["trace"],
               "hvps": whole["hvps"] + sum(r["hvps"] for r in layers)}
        if args.per_layer:
            obj["layers"] = [{"layer": r["layer"], "eigenvalues": r["eigenvalues"],
                              "trace": None if math.isnan(r["trace"]) else r["trace"],
                              "hvps": r["hvps"]} for r in layers]
        print(json.dumps(obj))
        return 0
    import pandas as pd

    rows = [{"layer": "all", **whole}] + layers
    df = pd.DataFrame([{"layer": r["layer"],
                        **{f"lambda_{i + 1}": v for i, v in enumerate(r["eigenvalues"])},
                        "trace": r["trace"], "hvps": r["hvps"], "converged": r["converged"]}
                       for r in rows])
    print_table(df, title=f"Hessian of the mean {args.loss_span}-token CE over "
                          f"{len(examples)} samples ({args.method})", floatfmt=".5g")
    return 0
