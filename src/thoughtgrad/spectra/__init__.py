# SPDX-License-Identifier: MIT
"""Layer-wise gradient spectra: exact per-sample singular values of every weight gradient.

``layer_spectra(model, input_ids, labels, attention_mask)`` returns a tidy table, one row
per sample x weight matrix; see :mod:`thoughtgrad.spectra.api`.
"""

from thoughtgrad.spectra.api import COLUMNS, layer_spectra

__all__ = ["COLUMNS", "layer_spectra"]
