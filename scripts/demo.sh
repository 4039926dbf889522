#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The main job on embedded defaults: set up the environment, then run the toy study
# (train direct + CoT gpt_mini with the seed's defaults, evaluate per K, print the table).
# Extra arguments are passed to `thoughtgrad toy`, e.g. `bash scripts/demo.sh --task fold`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"
exec thoughtgrad toy "$@"
