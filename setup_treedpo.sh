#!/usr/bin/env bash
# The TreeDPO training environment: a separate venv (.venv-treedpo) with LLaMA-Factory 0.9.5 and
# its pinned dependencies (TreeDPO/requirements.txt). It is separate because LLaMA-Factory pins
# older transformers/trl/peft/datasets than the main environment uses.
#   ./setup_treedpo.sh          create or update it (first time: ~8 GB download, a few minutes)
# Idempotent: a stamp (hash of the requirements) makes a re-run a no-op. TREEDPO_VENV overrides
# the location.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
VENV="${TREEDPO_VENV:-$ROOT/.venv-treedpo}"
PYTHON_BIN="${PYTHON_BIN:-python3}"
REQ=TreeDPO/requirements.txt
stamp="$VENV/.requirements.sha"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/llamafactory-cli" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
  exit 0
fi
echo "[setup_treedpo] installing LLaMA-Factory into $VENV (first time: ~8 GB, a few minutes)"
[[ -x "$VENV/bin/python" ]] || "$PYTHON_BIN" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch first, from its own pins, so the resolver never picks a different build for the rest.
torch_pins=$(grep -E '^(torch|torchvision|torchaudio)==' "$REQ" | tr '\n' ' ')
"$VENV/bin/python" -m pip install -q $torch_pins
"$VENV/bin/python" -m pip install -q -r "$REQ"
"$VENV/bin/python" -m pip check
"$VENV/bin/llamafactory-cli" version >/dev/null
echo "$want" >"$stamp"
echo "[setup_treedpo] ready: $VENV/bin/llamafactory-cli"
