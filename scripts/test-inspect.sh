#!/usr/bin/env bash
# make test's Python half: the Inspect integration (integrations/inspect/) in a virtual environment
# with the pinned inspect-ai, tested against a real offswitchd (tests/conftest.py starts one).
# Usage: scripts/test-inspect.sh BIN   (BIN: where offswitchd and next-question were built)
set -euo pipefail
bin="${1:?usage: scripts/test-inspect.sh BIN}"
venv=.build/inspect-venv
if [[ ! -x "$venv/bin/python" ]]; then
  echo "offswitch: creating $venv (inspect-ai and its dependencies from PyPI)" >&2
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -e "integrations/inspect[test]"
cd integrations/inspect
OFFSWITCH_BIN="$bin" exec "../../$venv/bin/python" -m pytest -q -p no:cacheprovider tests
