# SPDX-License-Identifier: MIT
"""Config helpers: devices, dtypes, typed key=value overrides, run identities."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch

from thoughtgrad.config import apply_overrides, identity_of, resolve_device, resolve_dtype
from thoughtgrad.errors import UserError


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    steps: int = 10
    every: int | None = None


@dataclass(frozen=True)
class Outer:
    name: str = "x"
    ks: tuple[int, ...] = (2, 3)
    flag: bool = False
    device: str = "auto"
    train: Inner = field(default_factory=Inner)


def test_overrides_are_typed_and_nested() -> None:
    cfg = apply_overrides(Outer(), ["train.lr=3e-4", "train.every=none", "ks=2-4,7",
                                    "flag=yes", "name=y"])
    assert cfg == Outer(name="y", ks=(2, 3, 4, 7), flag=True, train=Inner(lr=3e-4))
    assert apply_overrides(cfg, ["train.every=5"]).train.every == 5


@pytest.mark.parametrize(("item", "match"), [
    ("train.lr=fast", "train.lr"), ("nope=1", "no field 'nope'"), ("name.x=1", "no sub-fields"),
    ("train.steps", "key=value"), ("ks=2-x", "ks"), ("flag=maybe", "flag"),
    ("ks=6-2", "runs backwards"), ("ks=2-4,9-7", "'9-7' runs backwards"), ("ks=", "empty"),
])
def test_bad_overrides_are_one_line(item: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as info:
        apply_overrides(Outer(), [item])
    assert "\n" not in str(info.value)


def test_identity_drops_dotted_keys_and_ignores_absent_ones() -> None:
    ident = identity_of(Outer(), drop=("device", "train.every", "train.nope", "nope.deeper"))
    assert ident == {"name": "x", "ks": (2, 3), "flag": False,
                     "train": {"lr": 1e-3, "steps": 10}}
    assert identity_of(Outer())["train"]["every"] is None  # nothing dropped by default


def test_devices_and_dtypes() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_dtype("bf16") is torch.bfloat16 and resolve_dtype("fp64") is torch.float64
    with pytest.raises(UserError, match="unknown dtype"):
        resolve_dtype("fp8")


def test_cli_int_lists_share_the_override_grammar() -> None:
    import argparse

    from thoughtgrad.cli.common import int_list

    assert int_list("2-4,7") == [2, 3, 4, 7] and int_list("-3") == [-3]
    for bad, match in (("6-2", "runs backwards"), ("a", "not an integer"), (",", "empty")):
        with pytest.raises(argparse.ArgumentTypeError, match=match):
            int_list(bad)
