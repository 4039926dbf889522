# SPDX-License-Identifier: MIT
"""Benchmark: exact fast layer-wise gradient spectra vs the paper's per-sample SVD.

On one Llama-shaped random-init model (8 layers by default, so the transformer blocks and
not the LM head dominate) and the same samples, times
  (a) the paper's method: per sample, a forward with full-vocabulary logits at every
      position, one backward with weight gradients, then a full ``torch.linalg.svd`` of
      every q/k/v/o/gate/up/down gradient;
  (b) ours: ``thoughtgrad.spectra.layer_spectra`` (one batched forward with the LM head on
      the loss positions only, a backward to the activations with frozen weights, exact
      singular values from small QR cores);
  (c) a plain batched training step's gradient: the same forward as (b) (LM head on the
      loss positions only, ``logits_to_keep``) and a backward with weight gradients of
      every parameter, no statistics;
and prints wall times, (a)/(b), (b)/(c) and the max relative error between (a) and (b).
(a) can be timed on the first ``--paper-samples`` samples and scaled to all (samples are
independent), so it stays affordable at hidden 2048.

    python benchmarks/spectra.py --hidden 512,1024,2048 --samples 8 --paper-samples 2
"""

from __future__ import annotations

import argparse
import time

import torch


def llama(hidden: int, layers: int, vocab: int, seed: int) -> torch.nn.Module:
    """Llama-7B proportions at a given width: head dim 64, MLP 2.6875 x hidden, MHA."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden,
                      intermediate_size=int(hidden * 2.6875) // 64 * 64,
                      num_hidden_layers=layers, num_attention_heads=hidden // 64,
                      num_key_value_heads=hidden // 64, max_position_embeddings=1024)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager",
                                                 dtype=torch.float32)
    return model.eval()


def samples(n: int, lo: int, hi: int, vocab: int, seed: int):
    """n right-padded samples of lo..hi tokens; the first third of each is prompt (masked)."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=gen).tolist()
    width = max(lengths)
    ids = torch.randint(3, vocab, (n, width), generator=gen)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
        labels[i, length // 3:length] = ids[i, length // 3:length]
        ids[i, length:] = 0
    return ids, labels, mask, lengths


def paper_method(model, ids, labels, mask, views) -> list[dict]:
    """Per sample: backward with weight grads, full SVD of each matrix (the paper's loop)."""
    from thoughtgrad.spectra.capture import forward_logits
    from thoughtgrad.spectra.metrics import sample_losses, spectrum_stats, token_cross_entropy

    for p in model.parameters():
        p.requires_grad_(True)
    rows = []
    for s in range(ids.shape[0]):
        n = int(mask[s].sum())
        model.zero_grad(set_to_none=True)
        logits = forward_logits(model, ids[s:s + 1, :n], mask[s:s + 1, :n])
        ce, tok = token_cross_entropy(logits, labels[s:s + 1, :n])
        sample_losses(ce, tok, "mean").sum().backward()
        for v in views:
            grad = model.get_parameter(v.param).grad
            _, sv, _ = torch.linalg.svd(grad, full_matrices=False)
            rows.append({k: t.item() for k, t in spectrum_stats(sv, min(grad.shape)).items()})
    model.zero_grad(set_to_none=True)
    return rows


def plain_backward(model, ids, labels, mask) -> None:
    """One batched forward (LM head on the loss positions only, as in (b)) and a backward
    with weight gradients of every parameter; no statistics."""
    from thoughtgrad.spectra.capture import forward_logits
    from thoughtgrad.spectra.metrics import IGNORE_INDEX, kept_token_cross_entropy

    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    tok = labels[:, 1:] != IGNORE_INDEX  # B T-1: targets that carry loss
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = tok  # the positions that predict them
    ce = kept_token_cross_entropy(forward_logits(model, ids, mask, keep=keep),
                                  labels[:, 1:][tok])  # N
    per_sample = torch.zeros(ids.shape[0]).index_add(0, torch.nonzero(keep)[:, 0], ce)  # B
    (per_sample / tok.sum(1)).sum().backward()  # each sample's mean, summed: as (b)
    model.zero_grad(set_to_none=True)


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def run(hidden: int, args: argparse.Namespace) -> None:
    from thoughtgrad.models.roles import matrix_views
    from thoughtgrad.spectra import layer_spectra

    model = llama(hidden, args.layers, args.vocab, args.seed)
    ids, labels, mask, lengths = samples(args.samples, args.min_tokens, args.max_tokens,
                                         args.vocab, args.seed)
    views = matrix_views(model)
    # warm up allocator and kernels on a small slice
    layer_spectra(model, ids[:1, :96], labels[:1, :96], mask[:1, :96])
    plain_backward(model, ids[:1, :96], labels[:1, :96], mask[:1, :96])
    t_c = min(timed(plain_backward, model, ids, labels, mask)[0] for _ in range(args.repeats))
    runs_b = [timed(layer_spectra, model, ids, labels, mask) for _ in range(args.repeats)]
    t_b, fast = min(runs_b, key=lambda r: r[0])
    k = min(args.paper_samples or args.samples, args.samples)
    t_a, paper = timed(paper_method, model, ids[:k], labels[:k], mask[:k], views)
    t_a *= args.samples / k  # samples are independent: time is linear in their number
    fast = fast.iloc[:k * len(views)]
    errors = {}
    for stat in ("nuclear", "sigma_max", "ratio", "frobenius", "effective_rank"):
        errs = [abs(f - p[stat]) / abs(p[stat]) for f, p in zip(fast[stat], paper, strict=True)]
        errors[stat] = max(errs)
    errors["sigma_min/sigma_max"] = max(
        abs(f - p["sigma_min"]) / p["sigma_max"]
        for f, p in zip(fast["sigma_min"], paper, strict=True))
    print(f"hidden {hidden}  layers {args.layers}  vocab {args.vocab}  samples {args.samples} "
          f"(tokens {min(lengths)}-{max(lengths)})  matrices/sample {len(views)}  "
          f"threads {torch.get_num_threads()}")
    note = "" if k == args.samples else f"  (measured on {k} samples, x {args.samples / k:g})"
    print(f"  (a) paper: per sample, full logits, backward with weight grads, "
          f"full SVD of {len(views)} matrices : {t_a:8.2f} s{note}")
    print(f"  (b) ours: batched, loss-position logits, frozen weights, QR cores     "
          f"          : {t_b:8.2f} s")
    print(f"  (c) plain: batched, loss-position logits, backward with weight grads  "
          f"          : {t_c:8.2f} s")
    print(f"  (a)/(b) = {t_a / t_b:6.1f}   (b)/(c) = {t_b / t_c:5.2f}")
    print("  max relative error (a) vs (b): " +
          ", ".join(f"{k} {v:.1e}" for k, v in errors.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", default="1024", help="comma-separated widths")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--min-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--repeats", type=int, default=2, help="best of N for (b) and (c)")
    parser.add_argument("--paper-samples", type=int, default=None,
                        help="time (a) on the first N samples only and scale to all "
                             "(per-sample work is independent; the errors are measured on "
                             "those N); default all")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default torch's); 1 is steadiest on a "
                             "shared machine")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for hidden in (int(h) for h in args.hidden.split(",")):
        run(hidden, args)


if __name__ == "__main__":
    main()
