# SPDX-License-Identifier: MIT
"""Decoding, per-K accuracy, majority vote and pass@k."""
