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


@pytest.fixture(scope="session")
def toy_base(tmp_path_factory):
    """A tiny untrained gpt_mini checkpoint on the toy tokenizer (d=16, one layer, two
    heads): the model of the train / hessian / kill-and-resume tests."""
    from thoughtgrad.models.gpt_mini import GPTMini, GPTMiniConfig
    from thoughtgrad.tasks.toy import TOKENIZER

    d = tmp_path_factory.mktemp("toybase")
    GPTMini(GPTMiniConfig(vocab_size=TOKENIZER.vocab_size, d_model=16, n_layer=1, n_head=2,
                          block_size=64, mlp_ratio=2)).save(d)
    return d
