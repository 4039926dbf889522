#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job on embedded defaults: set up the environment, then run `thoughtgrad demo`:
# every study (toy lab, layer spectra, dynamics, test-time compute) and one report.html.
# Extra arguments are passed on, e.g. `bash scripts/demo.sh --quick` for a 2-minute smoke run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec thoughtgrad demo "$@"
