#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The test suite: set up the environment with test extras, install headless Chromium for
# the report's browser test when missing (Debian package; the test skips with a reason
# where that is impossible), lint, then run pytest. Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TG_EXTRAS="test"
# shellcheck source=env.sh
source "$ROOT/scripts/env.sh"
cd "$ROOT"
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "[thoughtgrad] installing chromium for the browser test" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
    || echo "[thoughtgrad] chromium could not be installed; the browser test will skip" >&2
fi
ruff check src tests benchmarks
exec python -m pytest "$@"
