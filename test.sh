#!/usr/bin/env bash
# Set everything up (idempotent) and run the test suite: ./test.sh [pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
./setup.sh --browser
[[ -x setup_treedpo.sh ]] && ./setup_treedpo.sh
export DATA_DIR="${DATA_DIR:-$( [[ -d ../shared/data ]] && cd ../shared/data && pwd || true)}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider "${@:-tests}"
