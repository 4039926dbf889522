# SPDX-License-Identifier: MIT
"""Fixtures of the experiments tests (the builders live in spectra_fixtures.py)."""

from spectra_fixtures import data, model_dir  # noqa: F401
