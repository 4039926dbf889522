# SPDX-License-Identifier: MIT
"""The summed-loss control derived from a mean-loss spectra run, without a second measurement.

For one sample with ``n`` loss-carrying tokens, the summed loss is ``n`` times the mean loss,
so its gradient ``G_sum = n * G_mean`` for every weight matrix: every singular value is
multiplied by ``n``. Hence

* ``nuclear``, ``sigma_max``, ``sigma_min``, ``frobenius`` scale by ``n`` (:data:`SCALED`);
* ``ratio``, ``effective_rank`` and ``rank`` are unchanged (they are scale-free);
* ``loss`` is unchanged: the ``spectra`` table's ``loss`` column is the sample's MEAN
  response cross-entropy (nats per token) whatever ``loss_reduction`` (see
  :func:`thoughtgrad.spectra.layer_spectra`), so a measured ``--loss-reduction sum`` run
  holds the mean too; the summed loss is ``n_tokens * loss``;
* ``loss_reduction`` becomes ``"sum"``.

``n`` is the ``n_tokens`` column: the tokens that carry loss after the causal shift (the
response, or only the answer for ``loss_span="answer"``; the prompt and padding excluded),
exactly the count the summed loss adds up. Pure pandas: tables in, tables out.
"""

from __future__ import annotations

import pandas as pd

SCALED: tuple[str, ...] = ("nuclear", "sigma_max", "sigma_min", "frobenius")
"""``spectra`` columns that are homogeneous of degree one in the gradient."""

SAMPLE_SCALED: tuple[str, ...] = ("mean_nuclear", "max_nuclear")
"""``spectra_samples`` columns that are homogeneous of degree one in the gradient (the
sample's mean and largest nuclear norm; the layer and role of the largest do not move)."""


def _scaled(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    if "loss_reduction" in df.columns and (df["loss_reduction"].astype(str) != "mean").any():
        raise ValueError("the sum control is derived from mean-loss rows only; got "
                         f"loss_reduction {sorted(set(df['loss_reduction'].astype(str)))}")
    out = df.copy()
    n = pd.to_numeric(out["n_tokens"], errors="raise").astype("float64")
    for col in columns:
        if col in out.columns:
            out[col] = pd.to_numeric(out[col]).astype("float64") * n
    if "loss_reduction" in out.columns:
        out["loss_reduction"] = pd.Series("sum", index=out.index, dtype="string")
    return out


def sum_spectra(spectra: pd.DataFrame) -> pd.DataFrame:
    """The ``spectra`` rows a ``loss_reduction="sum"`` run would write, from mean-loss rows
    (same columns and order; see the module docstring)."""
    return _scaled(spectra, SCALED)


def sum_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """The ``spectra_samples`` rows of the summed loss, from mean-loss rows."""
    return _scaled(samples, SAMPLE_SCALED)
