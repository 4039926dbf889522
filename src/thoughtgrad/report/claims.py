# SPDX-License-Identifier: MIT
"""The claims of seeds 001 / 002 (the Layer_Gradient paper) tested on ``spectra`` rows.

Tables in, tables out (pandas / numpy, :mod:`thoughtgrad.report.stats`); no model. Every
figure is a per-sample statistic with a percentile-bootstrap 95 % interval and its ``n``:

* the sample statistic is the nuclear norm of the sample's gradient averaged over layers,
  then over roles (Q/K/V/O and MLP: the ``all`` row of the comparison's separation);
* a *paired ratio* compares two conditions of the SAME sample id of one dataset (the grid
  measures every condition on the same ids): the mean over pairs of ``log(a / b)``,
  bootstrapped, shown as ``exp`` of the mean and of its interval (a geometric-mean ratio);
* an *AUROC* is P(an irrelevant response's statistic > a correct one's), computed after
  centring ``log(statistic)`` on each dataset's median (per model, control and CoT level),
  so pooling datasets compares responses within a dataset, not datasets with each other.
  Beside it, the loss-only baseline: the same AUROC of the sample's mean loss.

Controls come from the rows' settings: ``mean`` (pretrained, mean loss over the response),
``sum`` (``loss_reduction="sum"``), ``answer`` (``loss_span="answer"``), ``random``
(``init="random"``); ``mean*`` is the mean loss restricted to the datasets the controls
were measured on, so a control is read against the same samples.

The verdict rules are the constants below, decided from the intervals only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from thoughtgrad.report import stats
from thoughtgrad.tasks.records import dataset_stem

HOLDS = "holds"
HOLDS_ONLY_MEAN = "holds only with the mean loss"
FAILS = "does not hold"
NOT_MEASURABLE = "not measurable here"
VERDICT_ORDER = (FAILS, HOLDS_ONLY_MEAN, HOLDS)
"""Weakest first: a claim measured on several models gets the weakest of their verdicts."""

MIN_N = 3
"""Fewer pairs (or fewer samples in either group of an AUROC) than this: not measurable."""

RATIO_RULE = "holds when the 95 % interval of the paired ratio lies above 1"
"""Claims (a), (b): fast thinking (none) has LARGER gradients than detailed CoT only when
the whole interval of the geometric-mean ratio none / detailed is above 1."""

SEPARATION_RULE = ("holds when the detailed-CoT AUROC interval lies above 0.5 and the "
                   "no-CoT interval contains 0.5")
"""Claim (c): detailed CoT separates irrelevant from correct (its interval excludes chance,
on the irrelevant-above side) while no CoT does not (its interval includes chance)."""

LENGTH_RULE = "holds when the interval of the paired ratio 100 / 1000 contains 1"
"""Claim (d): on wiki, the popular pages cut to 100 tokens and to 1000 tokens give the
same gradient scale (the paper: 'the lengths of responses do not affect the gradient
scales'); an interval above (or below) 1 is the length effect reasoning CoT shows."""

NOT_BETTER_RULE = "holds unless the instruct interval lies entirely above the base interval"
"""Claim (e): the instruct model separates irrelevant responses (detailed CoT AUROC) no
better than the base model: refuted only when the instruct model's whole interval is above
the base model's."""

EARLY_RULE = "holds when the interval of (early - late) sensitivity lies above 0"
"""Claim (f): per pair (correct, irrelevant) of one sample id under detailed CoT,
sensitivity of a third of the layers = |log(irrelevant / correct)| of the mean nuclear
norm over those layers; the claim holds when early-minus-late is above 0 throughout the
interval."""

LESS_AFFECTED_RULE = "holds when the base ratio's interval lies entirely below the instruct one"
"""Claim (g): the none / detailed ratio of claim (a) is smaller for the pre-trained (base)
model than for the instruct model, with disjoint intervals."""

BEYOND_LOSS_RULE = ("the gradient adds to the loss only when its AUROC interval lies above "
                    "the loss-only AUROC")
"""Beside every separation figure: a gradient statistic whose AUROC interval does not
clear the loss's own AUROC (point estimate) separates no better than the loss."""

CONTROLS = ("mean", "mean*", "sum", "answer", "random")
CONTROL_TITLES = {"mean": "mean loss", "mean*": "mean loss (control datasets)",
                  "sum": "sum loss", "answer": "answer-only span", "random": "random init"}
WIKI_SHORT, WIKI_LONG = "popular_wikipedia_100", "popular_wikipedia_1000"


@dataclass(frozen=True)
class Claim:
    """One claim of the paper: its key, seed, the seed's words and its rule."""

    key: str
    seed: str
    words: str
    rule: str
    cross_model: bool = False


CLAIMS: tuple[Claim, ...] = (
    Claim("a", "001", "fast thinking without CoT leads to larger gradients ... than slow "
          "thinking (Detailed CoT)", RATIO_RULE),
    Claim("b", "001", "fast thinking ... the mean absolute differences (MADs) are the largest "
          "... a severe fluctuation of the gradient scales across all the layers", RATIO_RULE),
    Claim("c", "001", "the gradients of slow thinking can distinguish correct and irrelevant "
          "reasoning paths ... when no CoT paths are given, the gradient behaviors ... are "
          "almost identical", SEPARATION_RULE),
    Claim("d", "001", "for the knowledge-intensive task, the lengths of responses do not "
          "affect the gradient scales and fluctuations", LENGTH_RULE),
    Claim("e", "001", "instruction-tuned models do not show superior capability over base "
          "models in identifying incorrect reasoning paths", NOT_BETTER_RULE,
          cross_model=True),
    Claim("f", "001", "earlier layers show greater sensitivity to irrelevant responses when "
          "training with detailed CoT", EARLY_RULE),
    Claim("g", "002", "pre-trained LLMs are less affected by the instability of fast thinking "
          "than instruction-tuned LLMs", LESS_AFFECTED_RULE, cross_model=True),
)


@dataclass(frozen=True)
class Figure:
    """One measured figure: a point, its interval and n; ``holds`` by the claim's rule
    (None: not measurable); ``baseline`` the loss-only AUROC (separation figures)."""

    text: str
    value: float
    lo: float
    hi: float
    n: int
    holds: bool | None
    baseline: float = math.nan
    baseline_text: str = ""
    beyond_loss: bool | None = None


NOT_MEASURED = Figure("not measured", math.nan, math.nan, math.nan, 0, None)


# -- per-sample table ------------------------------------------------------------------------
def control_of(loss_reduction: str, loss_span: str, init: str) -> str:
    """The control a row was measured under (``other`` for combinations of controls)."""
    changed = [c for c, on in (("sum", loss_reduction == "sum"),
                               ("answer", loss_span == "answer"),
                               ("random", init == "random")) if on]
    return changed[0] if len(changed) == 1 else ("mean" if not changed else "other")


def sample_table(spectra: pd.DataFrame) -> pd.DataFrame:
    """One row per (model, control, source, sample): dataset, file stem, CoT level, response
    kind, ``stat`` (mean over roles of the mean over layers of the nuclear norm), ``mad``
    (mean over roles of the MAD across layers), ``early`` / ``late`` (mean nuclear norm
    over the first / last third of the layers), ``loss`` (mean nats per token), n_tokens."""
    df = spectra.copy()
    for col, default in (("loss_reduction", "mean"), ("loss_span", "response"),
                         ("init", "pretrained"), ("model", "model"), ("cot_level", None),
                         ("response_kind", "correct")):
        if col not in df.columns:
            df[col] = default
    df["control"] = [control_of(str(a), str(b), str(c)) for a, b, c in
                     zip(df["loss_reduction"], df["loss_span"], df["init"], strict=True)]
    df["stem"] = df["source"].astype(str).str.rsplit("/", n=1).str[-1]
    df["dataset"] = df["stem"].map(dataset_stem)
    df["nuclear"] = pd.to_numeric(df["nuclear"], errors="coerce")
    key = ["model", "control", "source", "sample_id"]
    per_role = df.groupby([*key, "role", "layer"], sort=False)["nuclear"].mean().reset_index()
    curve = per_role.groupby([*key, "layer"], sort=False)["nuclear"].mean().reset_index()

    def mad_of(g: pd.DataFrame) -> float:
        return stats.mad(g.sort_values("layer")["nuclear"].to_numpy())

    mads = (per_role.groupby([*key, "role"], sort=False)[["layer", "nuclear"]]
            .apply(mad_of).groupby(level=list(range(len(key)))).mean().rename("mad"))
    out = (per_role.groupby([*key, "role"], sort=False)["nuclear"].mean()
           .groupby(level=list(range(len(key)))).mean().rename("stat").to_frame())
    out["mad"] = mads
    # thirds of each model's own depth (models of 30 and 18 layers share a table)
    layers = curve.groupby("model")["layer"].agg(lambda x: np.sort(x.unique()))
    part_of = {}
    for model, ls in layers.items():
        thirds = [p for p in np.array_split(ls, 3) if p.size]  # 2 layers: [0], [1]
        part_of.update({(model, int(layer)): "early" for layer in thirds[0]})
        if len(thirds) > 1:
            part_of.update({(model, int(layer)): "late" for layer in thirds[-1]})
    part = pd.Series([part_of.get((m, int(la))) for m, la in zip(curve["model"], curve["layer"],
                                                                 strict=True)],
                     index=curve.index, dtype=object)
    for name in ("early", "late"):
        out[name] = curve[part == name].groupby(key, sort=False)["nuclear"].mean()
    labels = df.groupby(key, sort=False).agg(
        dataset=("dataset", "first"), stem=("stem", "first"), cot_level=("cot_level", "first"),
        response_kind=("response_kind", "first"), loss=("loss", "first"),
        n_tokens=("n_tokens", "first"))
    out = out.join(labels).reset_index()
    out["sample_id"] = out["sample_id"].astype(int)
    out["cot_level"] = out["cot_level"].astype(object).where(out["cot_level"].notna(), None)
    return out


# -- figures ---------------------------------------------------------------------------------
def _fmt(v: float, lo: float, hi: float, n: int) -> str:
    if not math.isfinite(v):
        return "not measured"
    iv = f" [{lo:.3g}, {hi:.3g}]" if math.isfinite(lo) else " [no interval]"
    return f"{v:.3g}{iv} n={n}"


def _pairs(s: pd.DataFrame, col: str, a: Callable[[pd.DataFrame], pd.Series],
           b: Callable[[pd.DataFrame], pd.Series]) -> np.ndarray:
    """``log(col_a / col_b)`` per (dataset, sample_id) present in both selections."""
    left = s[a(s)].set_index(["dataset", "sample_id"])[col]
    right = s[b(s)].set_index(["dataset", "sample_id"])[col]
    both = pd.concat([left.rename("a"), right.rename("b")], axis=1, join="inner")
    both = both[(both["a"] > 0) & (both["b"] > 0)]
    return np.log(both["a"].to_numpy(float) / both["b"].to_numpy(float))


def paired_ratio(logs: np.ndarray, rule: Callable[[float, float], bool], *, seed: int = 0
                 ) -> Figure:
    """The geometric-mean ratio of paired log ratios, its interval, and the rule on it."""
    if logs.size < MIN_N:
        return Figure(f"n={logs.size}: too few pairs", math.nan, math.nan, math.nan,
                      int(logs.size), None)
    m, lo, hi = (math.exp(x) for x in stats.bootstrap_mean_ci(logs, seed=seed))
    return Figure(_fmt(m, lo, hi, logs.size), m, lo, hi, int(logs.size), rule(lo, hi))


def mean_difference(values: np.ndarray, rule: Callable[[float, float], bool], *, seed: int = 0
                    ) -> Figure:
    if values.size < MIN_N:
        return Figure(f"n={values.size}: too few pairs", math.nan, math.nan, math.nan,
                      int(values.size), None)
    m, lo, hi = stats.bootstrap_mean_ci(values, seed=seed)
    return Figure(_fmt(m, lo, hi, values.size), m, lo, hi, int(values.size), rule(lo, hi))


def _centred_log(s: pd.DataFrame, col: str) -> pd.Series:
    v = np.log(s[col].where(s[col] > 0))
    return v - v.groupby([s["dataset"], s["cot_level"].astype(str)]).transform("median")


def separation(s: pd.DataFrame, level: str, *, seed: int = 0) -> Figure:
    """AUROC irrelevant-above-correct of the centred log statistic at one CoT level, with
    the loss-only AUROC beside it."""
    sub = s[(s["cot_level"] == level) & s["response_kind"].isin(("correct", "irrelevant"))]
    pos = sub["response_kind"] == "irrelevant"
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if min(n_pos, n_neg) < MIN_N:
        return Figure(f"n={n_pos}/{n_neg}: too few samples", math.nan, math.nan, math.nan,
                      min(n_pos, n_neg), None)
    x = _centred_log(sub, "stat").to_numpy(float)
    auc, lo, hi = stats.auroc_ci(x[pos.to_numpy()], x[~pos.to_numpy()], seed=seed)
    loss = _centred_log(sub, "loss").to_numpy(float)
    base, blo, bhi = stats.auroc_ci(loss[pos.to_numpy()], loss[~pos.to_numpy()], seed=seed)
    text = f"{auc:.3g} [{lo:.3g}, {hi:.3g}] n={n_pos}/{n_neg}"
    return Figure(text, auc, lo, hi, min(n_pos, n_neg), None, baseline=base,
                  baseline_text=f"{base:.3g} [{blo:.3g}, {bhi:.3g}]",
                  beyond_loss=bool(lo > base) if math.isfinite(lo) else None)


def _reasoning(s: pd.DataFrame) -> pd.DataFrame:
    return s[s["cot_level"].isin(("none", "simplified", "detailed"))]


def claim_figure(claim: Claim, s: pd.DataFrame, *, seed: int = 0) -> Figure:
    """The figure of one single-model claim on the per-sample rows of one model and control."""
    r = _reasoning(s)
    correct = r[r["response_kind"] == "correct"]
    if claim.key in ("a", "b"):
        col = "stat" if claim.key == "a" else "mad"
        logs = _pairs(correct, col, lambda d: d["cot_level"] == "none",
                      lambda d: d["cot_level"] == "detailed")
        return paired_ratio(logs, lambda lo, hi: lo > 1.0, seed=seed)
    if claim.key == "c":
        det, none = separation(r, "detailed", seed=seed), separation(r, "none", seed=seed)
        if not (math.isfinite(det.lo) and math.isfinite(none.lo)):
            return Figure(f"detailed {det.text}; none {none.text}", math.nan, math.nan,
                          math.nan, min(det.n, none.n), None)
        ok = det.lo > 0.5 and none.lo <= 0.5 <= none.hi
        beyond = det.beyond_loss
        return Figure(f"detailed {det.text}; none {none.text}", det.value, det.lo, det.hi,
                      det.n, bool(ok), baseline=det.baseline,
                      baseline_text=f"detailed {det.baseline_text}; none {none.baseline_text}",
                      beyond_loss=beyond)
    if claim.key == "d":
        wiki = s[(s["response_kind"] == "correct") & s["stem"].isin((WIKI_SHORT, WIKI_LONG))]
        wiki = wiki.assign(dataset="wiki")
        logs = _pairs(wiki, "stat", lambda d: d["stem"] == WIKI_SHORT,
                      lambda d: d["stem"] == WIKI_LONG)
        return paired_ratio(logs, lambda lo, hi: lo <= 1.0 <= hi, seed=seed)
    if claim.key == "f":
        det = r[r["cot_level"] == "detailed"]
        a = det[det["response_kind"] == "irrelevant"].set_index(["dataset", "sample_id"])
        b = det[det["response_kind"] == "correct"].set_index(["dataset", "sample_id"])
        both = a[["early", "late"]].join(b[["early", "late"]], rsuffix="_c", how="inner")
        both = both[(both > 0).all(axis=1)]
        sens = (np.abs(np.log(both["early"] / both["early_c"]))
                - np.abs(np.log(both["late"] / both["late_c"]))).to_numpy(float)
        return mean_difference(sens, lambda lo, hi: lo > 0.0, seed=seed)
    raise ValueError(f"claim {claim.key} compares models; use cross_model_figure")


def cross_model_figure(claim: Claim, by_model: Mapping[str, pd.DataFrame],
                       kinds: Mapping[str, str], names: Mapping[str, str], *, seed: int = 0
                       ) -> tuple[str, Figure]:
    """``(label, figure)`` of claim (e) or (g) between the first instruct and the first base
    model; the label names the models and says when they are of two families."""
    inst = sorted(m for m in by_model if kinds.get(m) == "instruct")
    base = sorted(m for m in by_model if kinds.get(m) == "base")
    if not inst or not base:
        return ("needs an instruct and a base model",
                Figure("needs an instruct and a base model", math.nan, math.nan, math.nan, 0,
                       None))
    i, b = inst[0], base[0]
    label = f"{names.get(i, i)} (instruct) vs {names.get(b, b)} (base)"
    if _family(names.get(i, i)) != _family(names.get(b, b)):
        label += " - across two families, not one model's base and instruct versions"
    if claim.key == "e":
        fi = separation(_reasoning(by_model[i]), "detailed", seed=seed)
        fb = separation(_reasoning(by_model[b]), "detailed", seed=seed)
    else:
        fi = claim_figure(CLAIMS[0], by_model[i], seed=seed)
        fb = claim_figure(CLAIMS[0], by_model[b], seed=seed)
    text = f"instruct {fi.text}; base {fb.text}"
    if not (math.isfinite(fi.lo) and math.isfinite(fb.lo)):
        return label, Figure(text, math.nan, math.nan, math.nan, min(fi.n, fb.n), None)
    ok = not fi.lo > fb.hi if claim.key == "e" else fb.hi < fi.lo
    return label, Figure(text, fi.value - fb.value, math.nan, math.nan, min(fi.n, fb.n),
                         bool(ok), baseline=fi.baseline,
                         baseline_text=(f"instruct {fi.baseline_text}; base {fb.baseline_text}"
                                        if fi.baseline_text else ""))


def _family(name: str) -> str:
    base = name.split(":")[-1].rsplit("/", 1)[-1].lower()
    return base.split("-")[0].split(".")[0].split("_")[0]


# -- verdicts --------------------------------------------------------------------------------
def verdict(figs: Mapping[str, Figure]) -> str:
    """From the figures of one claim under each control: not measurable without a mean-loss
    figure; does not hold when the mean-loss rule fails; holds only with the mean loss when
    the summed-loss figure is measurable and fails the rule; else holds."""
    mean = figs.get("mean", NOT_MEASURED)
    if mean.holds is None:
        return NOT_MEASURABLE
    if not mean.holds:
        return FAILS
    if figs.get("sum", NOT_MEASURED).holds is False:
        return HOLDS_ONLY_MEAN
    return HOLDS


def why(figs: Mapping[str, Figure]) -> str:
    """The controls and the loss baseline in words."""
    parts = []
    for control, said in (("answer", "answer-only span"), ("random", "random init")):
        h = figs.get(control, NOT_MEASURED).holds
        if h is not None:
            parts.append(f"{'also holds' if h else 'fails'} with the {said}"
                         + (" (the pattern needs no training)" if h and control == "random"
                            else ""))
    mean = figs.get("mean", NOT_MEASURED)
    if mean.beyond_loss is False:
        parts.append("the loss alone separates as well: the gradient adds nothing beyond it")
    elif mean.beyond_loss:
        parts.append("separates beyond the loss alone")
    return "; ".join(parts)


def weakest(verdicts: list[str]) -> str:
    """The overall verdict of a claim over models: the weakest measurable one."""
    measured = [v for v in verdicts if v in VERDICT_ORDER]
    if not measured:
        return NOT_MEASURABLE
    return min(measured, key=VERDICT_ORDER.index)


# -- the table -------------------------------------------------------------------------------
def claims_table(spectra: pd.DataFrame, *, kinds: Mapping[str, str] | None = None,
                 names: Mapping[str, str] | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per claim and model (one per claim for the cross-model claims): the seed's
    words, the figure under each control (:data:`CONTROL_TITLES`), the loss-only baseline,
    the verdict and why. ``kinds`` maps a ``model`` value to instruct / base; ``names`` to
    its display name (with its quantisation)."""
    kinds, names = dict(kinds or {}), dict(names or {})
    samples = sample_table(spectra)
    by: dict[tuple[str, str], pd.DataFrame] = {
        (str(m), str(c)): g for (m, c), g in samples.groupby(["model", "control"], sort=True)}
    models = sorted({m for m, _ in by})
    rows = []
    for claim in CLAIMS:
        if claim.cross_model:
            figs: dict[str, Figure] = {}
            label = ""
            for control in CONTROLS:
                per = {m: _for(by, m, control) for m in models}
                per = {m: d for m, d in per.items() if not d.empty}
                name, figs[control] = cross_model_figure(claim, per, kinds, names, seed=seed)
                label = name if control == "mean" else label
            rows.append(_row(claim, label, figs))
            continue
        for m in models:
            figs = {c: (claim_figure(claim, d, seed=seed) if not (d := _for(by, m, c)).empty
                        else NOT_MEASURED) for c in CONTROLS}
            rows.append(_row(claim, names.get(m, m), figs))
        if not models:
            rows.append(_row(claim, "no spectra rows", {c: NOT_MEASURED for c in CONTROLS}))
    return pd.DataFrame(rows)


def _for(by: Mapping[tuple[str, str], pd.DataFrame], model: str, control: str) -> pd.DataFrame:
    """Per-sample rows of a model under a control; ``mean*``: the mean-loss rows of the
    datasets any control of that model was measured on."""
    if control != "mean*":
        return by.get((model, control), pd.DataFrame())
    mean = by.get((model, "mean"), pd.DataFrame())
    datasets = set()
    for c in ("sum", "answer", "random"):
        d = by.get((model, c))
        if d is not None:
            datasets |= set(d["dataset"])
    return mean[mean["dataset"].isin(datasets)] if datasets and not mean.empty else \
        pd.DataFrame()


def _row(claim: Claim, model: str, figs: Mapping[str, Figure]) -> dict[str, object]:
    mean = figs.get("mean", NOT_MEASURED)
    row: dict[str, object] = {"claim": claim.key, "seed": claim.seed, "seed's words":
                              claim.words, "model": model}
    for control in CONTROLS:
        row[CONTROL_TITLES[control]] = figs.get(control, NOT_MEASURED).text
    row["loss only (AUROC)"] = mean.baseline_text
    row["verdict"] = verdict(figs)
    row["why"] = why(figs)
    row["rule"] = claim.rule
    row["value"], row["lo"], row["hi"], row["n"] = mean.value, mean.lo, mean.hi, mean.n
    return row
