#!/usr/bin/env bash
# The main job: the whole pipeline on the embedded model, on a CPU, end to end.
#   trees on train tasks -> merge -> preference pairs -> LLaMA-Factory dataset -> DPO (LoRA, CPU)
#   -> merge the adapter -> base and trained model on the same held-out episodes, greedy and
#   sampled -> accuracies with 95% intervals, paired tests, pair counts (summary.json).
# Sets everything up first (idempotent). Every constant below can be given as a flag:
#   ./demo.sh --tree_tasks 40 --train_args "max_steps=16 learning_rate=5.0e-4"
# Outputs go to OUT/run-<hash of every setting below>/: a run with other settings never reuses
# another's trees, model or evaluation rows; the same command again resumes where it stopped.
set -euo pipefail

# ---- Editable constants -------------------------------------------------------------------------
MODEL=SmolLM2-135M-Instruct
# An easy BabyAI level: the embedded model both solves and fails it, which is what pairs need
# (it never solved a GSM8K or MATH Level 1 sample; see the README).
DATASET=babyai_GoToRedBallGrey
TREE_TASKS=24              # train tasks to sample trees on
TREE_ARGS="--n_icl 2 --base 3 --max_steps 3 --window_size 4 --max_sample_number 8 --max_rollouts 16 --max_tokens 48"
EVAL_TASKS=200             # held-out test tasks, one greedy episode each
SAMPLED_TASKS=100          # of those, the first N also played SAMPLES times at temperature 1.0
SAMPLES=2
EVAL_ARGS="--n_icl 2 --max_steps 3 --max_tokens 48"
TRAIN_ARGS="max_steps=12 learning_rate=5.0e-4"
CUTOFF_LEN=1024            # one value: prepare_dataset's length filter and LLaMA-Factory's cutoff_len
PAIR_EXAMPLES=none         # pair prompts: none (SPEC §8) or sampled (the in-context examples the trees saw)
OUT=eval_results/demo      # everything this job writes
START_ID=900               # tmux session ids used by this job
PORT_BASE=8400
# -------------------------------------------------------------------------------------------------

while (( $# )); do
  key="${1#--}"; [[ "$1" == --* && $# -ge 2 ]] || { echo "error: expected --name value, got '$1'" >&2; exit 2; }
  var="${key^^}"
  [[ -v "$var" && "$var" =~ ^[A-Z_]+$ ]] || { echo "error: unknown flag --$key" >&2; exit 2; }
  printf -v "$var" '%s' "$2"; shift 2
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
PY=.venv/bin/python
T0=$(date +%s)
stage() {  # stage NAME command...: run it and record its seconds; on failure, say which stage failed and stop
  local name="$1" t; shift
  echo "== [$(date +%H:%M:%S)] $name"
  t=$(date +%s)
  "$@" || { echo "error: stage '$name' failed (exit $?)" >&2; exit 1; }
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - t ))" >>"$RUN/stage_seconds.tsv"
}
launch() {  # launch TASK_LIMIT AGENT_ARGS MODEL DATASET AGENT: one agent process, wait for it
  local limit="$1" args="$2"; shift 2
  WAIT=1 TASK_LIMIT="$limit" AGENT_ARGS="$args" PORT_BASE=$PORT_BASE NUM_GPUS="${NUM_GPUS:-0}" \
    ./distributed_test.sh "$@" 1 "$START_ID"
}
serve() { PORT_BASE=$PORT_BASE NUM_GPUS="${NUM_GPUS:-0}" ./distributed_test.sh serve "$1" "$START_ID"; }
stop_servers() { ./distributed_test.sh stop "$START_ID" >/dev/null 2>&1 || true; }
trap stop_servers EXIT

SETTINGS="MODEL=$MODEL DATASET=$DATASET TREE_TASKS=$TREE_TASKS TREE_ARGS=$TREE_ARGS EVAL_TASKS=$EVAL_TASKS SAMPLED_TASKS=$SAMPLED_TASKS SAMPLES=$SAMPLES EVAL_ARGS=$EVAL_ARGS TRAIN_ARGS=$TRAIN_ARGS CUTOFF_LEN=$CUTOFF_LEN PAIR_EXAMPLES=$PAIR_EXAMPLES"
RUN="$OUT/run-$(printf %s "$SETTINGS" | sha256sum | cut -c1-12)"
mkdir -p "$RUN"
printf '%s\n' "$SETTINGS" >"$RUN/settings.txt"
echo "== run directory $RUN (settings in $RUN/settings.txt)"
[[ "${DRY_RUN:-0}" == 1 ]] && exit 0

stage setup bash -c "./setup.sh && ./setup_treedpo.sh"
M="$($PY -m densepolicy.models "$MODEL")"
TREE_DIR="$($PY -m agents.codeact_agent_tree --print_run_dir --model "$MODEL" --output_root "$RUN" $TREE_ARGS)"
PATTERN="$DATASET.None_split_0.0.{}.csv"
SAMPLED_ARGS="$EVAL_ARGS --temperature 1.0 --samples $SAMPLES"

stage "start the model server" serve "$MODEL"
stage "sample trees" launch "$TREE_TASKS" "$TREE_ARGS --output_root $RUN" "$MODEL" "$DATASET" codeact_agent_tree
stage "merge trees" $PY post_process_test_result.py --merge_distributed_result --see_score \
  --data_dir "$TREE_DIR" --dataset_file_name_list "$PATTERN"
stage "preference pairs" $PY post_process_training_data.py --process_result --data_dir "$TREE_DIR" \
  --dataset_file_name_list "$PATTERN" --data_sub_dir "$DATASET" --dataset_file_name "${PATTERN/\{\}/None}" \
  --pair_examples "$PAIR_EXAMPLES"
stage "merge pairs" $PY post_process_training_data.py --merge_all_pairs --results_root "$RUN" \
  --output "$RUN/merged_pairs.csv" --default_density -1
stage "evaluate the base model (greedy)" launch "$EVAL_TASKS" "$EVAL_ARGS --output_root $RUN/eval_base" "$MODEL" "$DATASET" codeact_agent
stage "evaluate the base model (sampled)" launch "$SAMPLED_TASKS" "$SAMPLED_ARGS --output_root $RUN/eval_base" "$MODEL" "$DATASET" codeact_agent
stop_servers
# The dataset is registered in the job's own data directory, not in TreeDPO/data.
stage "LLaMA-Factory dataset" $PY prepare_dataset.py --input "$RUN/merged_pairs.csv" --name demo_tree_dpo \
  --model "$MODEL" --data_dir "$RUN/data" --cutoff_len "$CUTOFF_LEN"
if [[ ! -f "$RUN/lora/adapter_model.safetensors" ]]; then
  stage "DPO training" .venv-treedpo/bin/llamafactory-cli train TreeDPO/smollm2_lora_dpo_cpu.yaml \
    model_name_or_path="$M" dataset=demo_tree_dpo dataset_dir="$RUN/data" output_dir="$RUN/lora" \
    cutoff_len="$CUTOFF_LEN" $TRAIN_ARGS
fi
[[ -f "$RUN/trained_model/config.json" ]] || stage "merge adapter" .venv-treedpo/bin/python TreeDPO/merge_lora.py \
  --base "$M" --adapter "$RUN/lora" --out "$RUN/trained_model"
TRAINED="$(cd "$RUN/trained_model" && pwd)"
stage "start the trained model's server" serve "$TRAINED"
stage "evaluate the trained model (greedy)" launch "$EVAL_TASKS" "$EVAL_ARGS --output_root $RUN/eval_trained" "$TRAINED" "$DATASET" codeact_agent
stage "evaluate the trained model (sampled)" launch "$SAMPLED_TASKS" "$SAMPLED_ARGS --output_root $RUN/eval_trained" "$TRAINED" "$DATASET" codeact_agent
stop_servers

eval_dir() {  # eval_dir base|trained MODEL ARGS: where the launcher's agent writes that evaluation
  $PY -m agents.codeact_agent --print_run_dir --model "$2" --output_root "$RUN/eval_$1" $3
}
# A resumed run's cost is every invocation's stages, not the last one's.
SECONDS_ALL="$(awk -F'\t' '{s += $2} END {print s + 0}' "$RUN/stage_seconds.tsv")"
stage summary $PY -m densepolicy.report --dataset "$DATASET" --pairs "$RUN/merged_pairs.csv" \
  --greedy "$(eval_dir base "$MODEL" "$EVAL_ARGS")" "$(eval_dir trained "$TRAINED" "$EVAL_ARGS")" \
  --sampled "$(eval_dir base "$MODEL" "$SAMPLED_ARGS")" "$(eval_dir trained "$TRAINED" "$SAMPLED_ARGS")" \
  --train_results "$RUN/lora/train_results.json" --seconds "$SECONDS_ALL" --out "$RUN/summary.json" \
  --extra "{\"run\": \"$RUN\", \"seconds_this_invocation\": $(( $(date +%s) - T0 ))}"
cp "$RUN/summary.json" "$OUT/.summary.json.tmp" && mv "$OUT/.summary.json.tmp" "$OUT/summary.json"
echo "== summary: $OUT/summary.json"
