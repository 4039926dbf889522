# SPDX-License-Identifier: MIT
"""The serial-compute budget simulator of the toy lab (seed 003).

It simulates the *budget*, not a transformer. A decoder of depth L gives one token's
computation at most L serial steps ("slots"). Summing K digits by the running total needs
K-1 serial additions.

* Direct (answer only): all K-1 additions must fit in the one forward pass that emits the
  answer: needed = K-1, available = L, solvable iff K-1 <= L, otherwise "overflow".
* CoT (running-total trace ``{3+4=7;7+5=12;12+6=18}18#``): every trace token is a fresh
  forward pass and each step needs one addition, so it is solvable iff L >= 1. The total
  serial budget is the expected number of response tokens times L ("layer-ops").

The expected response length is exact for uniform digits 0..9: a dynamic programme over
the distribution of the running sum gives the expected character count of every partial
sum (the trace writes ``s_{i-1}+d_i=s_i`` for i = 2..K, ``;`` between steps, braces,
the answer ``s_K`` and ``#``; one character is one token).

:func:`simulator_html` returns an offline widget whose JavaScript mirrors
:func:`serial_budget` operation for operation (the test runs it under ``node``).
"""

from __future__ import annotations

import pandas as pd

from thoughtgrad.errors import UserError

K_LIMIT = 1000  # the DP is O(K^2); beyond this nobody is asking about a toy budget
SOLVABLE = "solvable"
OVERFLOW = "overflow"


def _digits(n: int) -> int:
    """Number of decimal characters of a non-negative integer."""
    count = 1
    while n >= 10:
        n //= 10
        count += 1
    return count


def _expected_len(p: list[float]) -> float:
    """``sum_s p[s] * digits(s)`` as a plain left-to-right loop (the JavaScript mirror
    adds in the same order, so both give the same float; ``sum()`` may compensate)."""
    e = 0.0
    for s, ps in enumerate(p):
        e += ps * _digits(s)
    return e


def expected_cot_tokens(k: int) -> float:
    """Expected token count of the addition CoT response for K uniform digits 0..9.

    ``p[s]`` is the probability that the running sum equals ``s``; after digit i the
    expected length of ``s_i`` is ``sum_s p[s] * digits(s)``. Response tokens:
    ``{`` + sum_{i=2..K} (len(s_{i-1}) + 3 + len(s_i)) + max(K-2, 0) semicolons + ``}``
    + len(s_K) + ``#``.
    """
    if k < 1:
        raise UserError(f"K={k}: need at least one digit")
    p = [0.1] * 10  # distribution of s_1 = d_1
    lens = [_expected_len(p)]  # E[len(s_1)]
    for _ in range(2, k + 1):
        q = [0.0] * (len(p) + 9)
        for s, ps in enumerate(p):
            if ps == 0.0:
                continue
            for d in range(10):
                q[s + d] += ps * 0.1
        p = q
        lens.append(_expected_len(p))
    total = 2.0  # the braces
    for i in range(1, k):  # step i+1 writes s_i + d = s_{i+1}
        total += lens[i - 1] + 3.0 + lens[i]
    total += max(k - 2, 0)  # semicolons between steps
    total += lens[k - 1] + 1.0  # the answer and '#'
    return total


def serial_budget(layers: int, k: int) -> dict[str, object]:
    """The budget of both regimes for depth ``layers`` (L) and ``k`` digits (K).

    Keys: ``layers``, ``k``; ``direct_needed`` (K-1 serial adds), ``direct_slots`` (L),
    ``direct_verdict``; ``cot_tokens`` (expected response tokens), ``cot_layer_ops``
    (tokens x L), ``cot_step_need`` (1 add per step), ``cot_verdict``. Verdicts are
    ``"solvable"`` or ``"overflow"``.
    """
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
        raise UserError(f"layers={layers!r}: must be an integer >= 1 (a transformer has at "
                        "least one layer)")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= K_LIMIT:
        raise UserError(f"K={k!r}: must be an integer in 1..{K_LIMIT}")
    tokens = expected_cot_tokens(k)
    return {
        "layers": layers,
        "k": k,
        "direct_needed": k - 1,
        "direct_slots": layers,
        "direct_verdict": SOLVABLE if k - 1 <= layers else OVERFLOW,
        "cot_tokens": tokens,
        "cot_layer_ops": tokens * layers,
        "cot_step_need": 1,
        "cot_verdict": SOLVABLE if layers >= 1 else OVERFLOW,
    }


def budget_table(layers: int | list[int], ks: int | list[int] | range) -> pd.DataFrame:
    """One row of :func:`serial_budget` per (L, K), L and K in the given orders."""
    lays = [layers] if isinstance(layers, int) else list(layers)
    kk = [ks] if isinstance(ks, int) else list(ks)
    return pd.DataFrame([serial_budget(int(lay), int(k)) for lay in lays for k in kk])


# -- the offline widget ---------------------------------------------------------------------
SIMULATOR_JS = r"""
function tgDigits(n) {
  var count = 1;
  while (n >= 10) { n = Math.floor(n / 10); count += 1; }
  return count;
}
function tgExpectedCotTokens(k) {
  var p = [], s, d, i;
  for (s = 0; s < 10; s++) p.push(0.1);
  var lens = [];
  var e = 0.0;
  for (s = 0; s < p.length; s++) e += p[s] * tgDigits(s);
  lens.push(e);
  for (i = 2; i <= k; i++) {
    var q = [];
    for (s = 0; s < p.length + 9; s++) q.push(0.0);
    for (s = 0; s < p.length; s++) {
      if (p[s] === 0.0) continue;
      for (d = 0; d < 10; d++) q[s + d] += p[s] * 0.1;
    }
    p = q;
    e = 0.0;
    for (s = 0; s < p.length; s++) e += p[s] * tgDigits(s);
    lens.push(e);
  }
  var total = 2.0;
  for (i = 1; i < k; i++) total += lens[i - 1] + 3.0 + lens[i];
  total += Math.max(k - 2, 0);
  total += lens[k - 1] + 1.0;
  return total;
}
function tgSerialBudget(layers, k) {
  var tokens = tgExpectedCotTokens(k);
  return {
    layers: layers, k: k,
    direct_needed: k - 1, direct_slots: layers,
    direct_verdict: (k - 1 <= layers) ? "solvable" : "overflow",
    cot_tokens: tokens, cot_layer_ops: tokens * layers, cot_step_need: 1,
    cot_verdict: (layers >= 1) ? "solvable" : "overflow"
  };
}
"""

_WIDGET_JS = r"""
(function () {
  var root = document.getElementById("tg-sim");
  if (!root) return;
  var lIn = document.getElementById("tg-sim-layers");
  var kIn = document.getElementById("tg-sim-k");
  function put(id, text) { document.getElementById(id).textContent = text; }
  function verdict(id, v) {
    var el = document.getElementById(id);
    el.textContent = v;
    el.className = "tg-verdict tg-" + v;
  }
  function update() {
    var b = tgSerialBudget(parseInt(lIn.value, 10), parseInt(kIn.value, 10));
    put("tg-sim-layers-value", String(b.layers));
    put("tg-sim-k-value", String(b.k));
    put("tg-sim-direct-needed", String(b.direct_needed));
    put("tg-sim-direct-slots", String(b.direct_slots));
    verdict("tg-sim-direct-verdict", b.direct_verdict);
    put("tg-sim-cot-tokens", b.cot_tokens.toFixed(2));
    put("tg-sim-cot-ops", b.cot_layer_ops.toFixed(1));
    put("tg-sim-cot-need", String(b.cot_step_need));
    verdict("tg-sim-cot-verdict", b.cot_verdict);
    var maxv = Math.max(b.direct_needed, b.direct_slots, 1);
    document.getElementById("tg-sim-bar-need").style.width = (100 * b.direct_needed / maxv) + "%";
    document.getElementById("tg-sim-bar-slots").style.width = (100 * b.direct_slots / maxv) + "%";
  }
  lIn.addEventListener("input", update);
  kIn.addEventListener("input", update);
  update();
})();
"""

_WIDGET_CSS = """
#tg-sim { border: 1px solid #999; padding: 0.8em 1em; max-width: 46em; }
#tg-sim label { display: inline-block; min-width: 9em; }
#tg-sim table td { padding: 0.15em 0.8em; }
#tg-sim .tg-bar { height: 0.7em; background: #444; margin: 0.2em 0; }
#tg-sim .tg-bar.tg-slots { background: repeating-linear-gradient(45deg, #444 0 4px, #fff 4px 8px);
  border: 1px solid #444; }
.tg-verdict { font-weight: bold; padding: 0 0.4em; }
.tg-solvable { border: 2px solid #222; }
.tg-overflow { border: 2px dashed #222; background: #ddd; text-decoration: underline; }
"""


def simulator_html(*, layers: int = 4, k: int = 6, max_layers: int = 16, max_k: int = 20) -> str:
    """A self-contained widget (HTML + inline CSS + plain JavaScript, no network).

    Sliders for L (1..``max_layers``) and K (1..``max_k``); the table and both verdicts
    update on every input event via ``tgSerialBudget``, the JavaScript mirror of
    :func:`serial_budget`.
    """
    if not 1 <= layers <= max_layers or not 1 <= k <= max_k:
        raise UserError(f"simulator start L={layers}, K={k} outside its sliders")
    first = serial_budget(layers, k)

    def row(label: str, cell_id: str, value: str) -> str:
        return f'<tr><td>{label}</td><td id="{cell_id}">{value}</td></tr>'

    def verdict(label: str, cell_id: str, value: object) -> str:
        return (f'<tr><td>{label}</td><td><span id="{cell_id}" class="tg-verdict '
                f'tg-{value}">{value}</span></td></tr>')

    rows = "\n".join([
        row("Direct: serial adds needed (K&minus;1)", "tg-sim-direct-needed",
            str(first["direct_needed"])),
        '<tr><td colspan="2"><div class="tg-bar" id="tg-sim-bar-need"></div>'
        '<div class="tg-bar tg-slots" id="tg-sim-bar-slots"></div></td></tr>',
        row("Direct: slots available (L)", "tg-sim-direct-slots", str(first["direct_slots"])),
        verdict("Direct: verdict", "tg-sim-direct-verdict", first["direct_verdict"]),
        row("CoT: expected response tokens", "tg-sim-cot-tokens", f"{first['cot_tokens']:.2f}"),
        row("CoT: total layer-ops (tokens &times; L)", "tg-sim-cot-ops",
            f"{first['cot_layer_ops']:.1f}"),
        row("CoT: serial adds needed per step", "tg-sim-cot-need", str(first["cot_step_need"])),
        verdict("CoT: verdict", "tg-sim-cot-verdict", first["cot_verdict"]),
    ])
    return f"""<div id="tg-sim">
<style>{_WIDGET_CSS}</style>
<p>Direct mode has one forward pass for K&minus;1 serial additions; CoT mode spends one
forward pass per response token, each needing one addition. This models the budget, not a
transformer.</p>
<p><label for="tg-sim-layers">layers L = <span id="tg-sim-layers-value">{layers}</span></label>
<input type="range" id="tg-sim-layers" min="1" max="{max_layers}" value="{layers}"></p>
<p><label for="tg-sim-k">digits K = <span id="tg-sim-k-value">{k}</span></label>
<input type="range" id="tg-sim-k" min="1" max="{max_k}" value="{k}"></p>
<table>
{rows}
</table>
<script>{SIMULATOR_JS}{_WIDGET_JS}</script>
</div>"""
