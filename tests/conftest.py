# SPDX-License-Identifier: MIT
"""Shared test fixtures: fixed seeds and a locally built tokenizer (nothing downloaded)."""

from __future__ import annotations

import pytest
import torch

from thoughtgrad.config import seed_everything

torch.set_num_threads(1)  # also for module-scoped fixtures, which set up before the one below


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread for every test, restored after it (``thoughtgrad demo --threads``
    changes it): tiny models run faster that way and do not thrash when other jobs share
    the machine's two cores."""
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def seed() -> torch.Generator:
    """Seed Python, NumPy and torch with 0 before every test; the CPU generator."""
    return seed_everything(0)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The default locally trained byte-level BPE (vocab 512, BOS/EOS/PAD, chat template)."""
    from thoughtgrad.models.tiny import build_tokenizer

    return build_tokenizer()
