# SPDX-License-Identifier: MIT
"""layer_spectra: table contract, input validation, batch independence, role filters."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest
import torch

from thoughtgrad.errors import UserError
from thoughtgrad.models.tiny import tiny_model
from thoughtgrad.spectra import COLUMNS, layer_spectra


@pytest.fixture(scope="module")
def llama():
    return tiny_model("llama", vocab_size=128).double()


def _batch():
    ids = torch.randint(3, 128, (3, 16))
    mask = torch.ones_like(ids)
    mask[0, 10:] = 0
    mask[2, 5:] = 0
    labels = ids.clone()
    labels[:, :3] = -100
    return ids, labels, mask


def test_columns_and_rows(llama):
    ids, labels, mask = _batch()
    df = layer_spectra(llama, ids, labels, mask)
    assert tuple(df.columns) == COLUMNS
    assert len(df) == 3 * 2 * 7  # samples x layers x roles
    assert df.groupby("sample")["n_tokens"].first().tolist() == [7, 13, 2]
    first = df.iloc[0]
    assert (first["layer"], first["role"], first["param"]) == (
        0, "q", "model.layers.0.self_attn.q_proj.weight")
    k = df.query("role == 'k'")
    assert (k["rank"] <= k["n_tokens"] + 3).all()  # rank <= tokens before the last loss token


def test_sample_result_does_not_depend_on_its_batch(llama):
    ids, labels, mask = _batch()
    whole = layer_spectra(llama, ids, labels, mask)
    alone = layer_spectra(llama, ids[1:2], labels[1:2], mask[1:2])
    part = whole.query("sample == 1").reset_index(drop=True).drop(columns="sample")
    pd.testing.assert_frame_equal(part, alone.drop(columns="sample"), rtol=1e-6)


def test_padding_labels_are_ignored(llama):
    ids, labels, mask = _batch()
    dirty = labels.clone()  # labels = input_ids everywhere, padding included
    dirty[mask == 0] = 5
    pd.testing.assert_frame_equal(layer_spectra(llama, ids, dirty, mask),
                                  layer_spectra(llama, ids, labels, mask))


def test_roles_filter_and_fused(llama):
    ids, labels, mask = _batch()
    df = layer_spectra(llama, ids, labels, mask, roles=["q", "down"])
    assert set(df["role"]) == {"q", "down"}
    gpt2 = tiny_model("gpt2", vocab_size=128)
    fused = layer_spectra(gpt2, ids, labels, mask, roles=["q"], include_fused=True)
    assert set(fused["role"]) == {"q", "qkv"}
    assert set(fused["param"]) == {f"transformer.h.{i}.attn.c_attn.weight" for i in range(2)}


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "slow"}, "method"),
    ({"loss_reduction": "max"}, "loss_reduction"),
    ({"roles": ["query"]}, "unknown roles"),
])
def test_bad_options(llama, kwargs, message):
    ids, labels, mask = _batch()
    with pytest.raises(UserError, match=message):
        layer_spectra(llama, ids, labels, mask, **kwargs)


def test_bad_shapes_and_left_padding(llama):
    ids, labels, mask = _batch()
    # its own one-line check, which a caller without the test-time shape checker sees
    unchecked = inspect.unwrap(layer_spectra)
    with pytest.raises(UserError, match="labels shape"):
        unchecked(llama, ids, labels[:, :5], mask)
    left = mask.flip(1)
    with pytest.raises(UserError, match="right padding"):
        layer_spectra(llama, ids, labels, left)


def test_sample_without_response_tokens_is_named(llama):
    ids, labels, mask = _batch()
    labels[2, :] = -100
    for method in ("fast", "reference"):
        with pytest.raises(UserError, match="sample 2"):
            layer_spectra(llama, ids, labels, mask, method=method)


def test_length_groups_bound_padding():
    from thoughtgrad.spectra.fast import length_groups

    groups = length_groups([100, 250, 240, 95, 10])
    assert groups == [([1, 2], 250), ([0, 3], 100), ([4], 10)]
    assert sorted(i for g, _ in groups for i in g) == list(range(5))
