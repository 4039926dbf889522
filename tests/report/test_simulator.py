# SPDX-License-Identifier: MIT
"""The serial-compute budget simulator: table values, expected length, JS mirror."""

from __future__ import annotations

import json
import random
import shutil
import subprocess

import pytest

from thoughtgrad.errors import UserError
from thoughtgrad.report import simulator
from thoughtgrad.report.simulator import budget_table, serial_budget


def test_budget_table_few_cases() -> None:
    t = budget_table([4, 2], [2, 5, 6]).set_index(["layers", "k"])
    assert t.loc[(4, 5), "direct_needed"] == 4 and t.loc[(4, 5), "direct_slots"] == 4
    assert t.loc[(4, 5), "direct_verdict"] == "solvable"
    assert t.loc[(4, 6), "direct_verdict"] == "overflow"
    assert t.loc[(2, 5), "direct_verdict"] == "overflow"
    assert (t["cot_verdict"] == "solvable").all()
    assert t.loc[(4, 2), "cot_tokens"] == pytest.approx(9.9)  # {a+b=s}s#: 2+1+3+E|s|*2+1
    assert t.loc[(4, 6), "cot_layer_ops"] == pytest.approx(4 * t.loc[(4, 6), "cot_tokens"])
    assert serial_budget(1, 3)["cot_verdict"] == "solvable"
    assert serial_budget(1, 1)["direct_verdict"] == "solvable"


@pytest.mark.parametrize("bad", [(-1, 3), (0, 3), (4, 0), (4, 10_000)])
def test_bad_budget_input(bad: tuple[int, int]) -> None:
    with pytest.raises(UserError):
        serial_budget(*bad)


def _own_trace(digits: list[int]) -> str:
    """An independent writer of the addition trace ``{3+4=7;7+5=12}12#``."""
    acc, steps = digits[0], []
    for d in digits[1:]:
        steps.append(f"{acc}+{d}={acc + d}")
        acc += d
    return "{" + ";".join(steps) + "}" + f"{acc}#"


def _exact_mean_length(k: int) -> float:
    """Enumerate every K-digit problem (10^K of them) for small K."""
    import itertools

    total = sum(len(_own_trace(list(ds))) for ds in itertools.product(range(10), repeat=k))
    return total / 10**k


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_expected_tokens_exact_by_enumeration(k: int) -> None:
    assert simulator.expected_cot_tokens(k) == pytest.approx(_exact_mean_length(k), abs=1e-9)


def test_expected_tokens_vs_real_traces() -> None:
    rng = random.Random(0)
    try:
        from thoughtgrad.tasks import toy
    except ImportError:  # the toy task module is optional for this check
        toy = None
    for k in (5, 6, 8):
        n = 20000
        if toy is not None:
            task = toy.get_task("addition")
            lengths = [len(toy.response(task, task.draw(rng, k), "cot")) for _ in range(n)]
        else:
            lengths = [len(_own_trace([rng.randrange(10) for _ in range(k)])) for _ in range(n)]
        mean = sum(lengths) / n
        assert abs(mean - simulator.expected_cot_tokens(k)) < 0.1, (k, mean)


def test_javascript_mirrors_python() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed; cannot run the widget's JavaScript")
    grid = [(lay, k) for lay in (1, 3, 4, 12) for k in (1, 2, 5, 6, 7, 20)]
    script = simulator.SIMULATOR_JS + (
        f"\nvar grid = {json.dumps(grid)};\n"
        "console.log(JSON.stringify(grid.map(function (g) "
        "{ return tgSerialBudget(g[0], g[1]); })));\n")
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=30,
                         check=True)
    js = json.loads(out.stdout)
    for (lay, k), got in zip(grid, js, strict=True):
        want = serial_budget(lay, k)
        assert set(got) == set(want)
        for key, value in want.items():
            if isinstance(value, float):
                assert got[key] == pytest.approx(value, rel=1e-12), (lay, k, key)
            else:
                assert got[key] == value, (lay, k, key)


def test_widget_is_offline_and_has_sliders() -> None:
    page = simulator.simulator_html()
    assert 'type="range"' in page and "tg-sim-direct-verdict" in page
    assert "http://" not in page and "https://" not in page
