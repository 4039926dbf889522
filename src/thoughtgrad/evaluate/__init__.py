# SPDX-License-Identifier: MIT
"""Decoding, per-K accuracy, sampling, majority vote and pass@k.

``majority_vote`` and ``pass_at_k`` are re-exported here (``thoughtgrad.evaluate.pass_at_k``);
importing this package pulls in nothing heavier than :mod:`thoughtgrad.evaluate.voting`.
"""

from thoughtgrad.evaluate.voting import majority_vote, pass_at_k

__all__ = ["majority_vote", "pass_at_k"]
