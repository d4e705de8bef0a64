#!/usr/bin/env bash
# The main job: the whole pipeline on the embedded model, on a CPU, end to end.
#   trees on a few train tasks -> merge -> preference pairs -> LLaMA-Factory dataset
#   -> DPO training (LoRA, CPU) -> merge the adapter -> evaluate base and trained model
#   on the same test tasks -> a small table.
# Sets everything up first (idempotent). Every constant below can be given as a flag:
#   ./demo.sh --dataset gsm8k --tree_tasks 8
set -euo pipefail

# ---- Editable constants -------------------------------------------------------------------------
MODEL=SmolLM2-135M-Instruct
# An easy BabyAI level: the embedded model both solves and fails it, which is what pairs need
# (it never solved a GSM8K or MATH Level 1 sample; see the README).
DATASET=babyai_GoToRedBallGrey
TREE_TASKS=5               # train tasks to sample trees on
EVAL_TASKS=6               # test tasks to evaluate base and trained model on
TREE_ARGS="--n_icl 2 --base 3 --max_steps 2 --window_size 3 --max_sample_number 2 --max_rollouts 6 --max_tokens 40"
EVAL_ARGS="--n_icl 2 --max_steps 2 --max_tokens 40"
TRAIN_ARGS="max_steps=8 learning_rate=5.0e-4 cutoff_len=1024"
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
stage() {  # stage NAME command...: run it; on failure, say which stage failed and stop
  local name="$1"; shift
  echo "== [$(date +%H:%M:%S)] $name"
  "$@" || { echo "error: stage '$name' failed (exit $?)" >&2; exit 1; }
}
launch() {  # launch TASK_LIMIT AGENT_ARGS MODEL DATASET AGENT: one agent process, wait for it
  local limit="$1" args="$2"; shift 2
  WAIT=1 TASK_LIMIT="$limit" AGENT_ARGS="$args" PORT_BASE=$PORT_BASE NUM_GPUS="${NUM_GPUS:-0}" \
    ./distributed_test.sh "$@" 1 "$START_ID"
}

stage setup bash -c "./setup.sh && ./setup_treedpo.sh"
M="$($PY -m densepolicy.models "$MODEL")"
mkdir -p "$OUT"
TREE_DIR="$OUT/codeact_agent_tree.$MODEL/$($PY -c "
import sys; from agents.codeact_agent_tree import add_args, run_name; import argparse
p = argparse.ArgumentParser(); add_args(p); a, _ = p.parse_known_args(sys.argv[1:]); print(run_name(a))" $TREE_ARGS)"
PATTERN="$DATASET.None_split_0.0.{}.csv"

stage "sample trees" launch "$TREE_TASKS" "$TREE_ARGS --output_root $OUT" "$MODEL" "$DATASET" codeact_agent_tree
stage "merge trees" $PY post_process_test_result.py --merge_distributed_result --see_score \
  --data_dir "$TREE_DIR" --dataset_file_name_list "$PATTERN"
stage "preference pairs" $PY post_process_training_data.py --process_result --data_dir "$TREE_DIR" \
  --dataset_file_name_list "$PATTERN" --data_sub_dir "$DATASET" --dataset_file_name "${PATTERN/\{\}/None}"
SELECTED=$($PY -c "
import sys; from densepolicy.pairs import discover_pair_files, iter_pairs
print(sum(bool(r['selected']) for p in discover_pair_files(sys.argv[1]) for _, r in iter_pairs(p)))" "$OUT")
MODELS=("$MODEL")
if (( SELECTED == 0 )); then
  # Pairs need tasks the policy sometimes solves and sometimes fails; a weak model on a small
  # budget may have none. Say so plainly rather than train on nothing.
  echo "== no selected preference pairs: the policy never both solved and failed a task here;"
  echo "   training is skipped and only the base model is evaluated (more --tree_tasks, a larger"
  echo "   TREE_ARGS budget or an easier --dataset give pairs)"
else
  stage "merge pairs" $PY post_process_training_data.py --merge_all_pairs --results_root "$OUT" \
    --output "$OUT/merged_pairs.csv" --default_density -1
  # The dataset is registered in the job's own data directory, not in TreeDPO/data.
  stage "LLaMA-Factory dataset" $PY prepare_dataset.py --input "$OUT/merged_pairs.csv" --name demo_tree_dpo \
    --model "$MODEL" --data_dir "$OUT/data"
  stage "DPO training" .venv-treedpo/bin/llamafactory-cli train TreeDPO/smollm2_lora_dpo_cpu.yaml \
    model_name_or_path="$M" dataset=demo_tree_dpo dataset_dir="$OUT/data" output_dir="$OUT/lora" $TRAIN_ARGS
  stage "merge adapter" .venv-treedpo/bin/python TreeDPO/merge_lora.py --base "$M" --adapter "$OUT/lora" \
    --out "$OUT/trained_model"
  MODELS+=("$(cd "$OUT/trained_model" && pwd)")
fi
for model in "${MODELS[@]}"; do
  stage "evaluate $(basename "$model")" launch "$EVAL_TASKS" "$EVAL_ARGS --output_root $OUT" "$model" "$DATASET" codeact_agent
done
stage summary $PY - "$OUT" "$DATASET" "${MODELS[@]}" <<'EOF'
import glob, json, sys
from densepolicy.results import read_results, run_dir
from densepolicy.merge import merge
out, dataset, base, *trained = sys.argv[1:]
pattern = f"{dataset}.None_split_0.0.{{}}.csv"
def accuracy(model):
    [d] = glob.glob(str(run_dir(out, "codeact_agent", model, "*")))
    return merge(d, pattern)["mean_score"], len(read_results(f"{d}/{pattern.replace('{}', 'None')}"))
pairs = len(read_results(f"{out}/merged_pairs.csv")) if trained else 0
loss = f'{json.load(open(f"{out}/lora/train_results.json"))["train_loss"]:.4f}' if trained else "-"
acc_base, n = accuracy(base)
acc_trained = f"{accuracy(trained[0])[0]:.1f}%" if trained else "- (not trained)"
print(f"\n| pairs (selected) | training loss | {n} test tasks: base acc | trained acc |")
print(f"|---|---|---|---|\n| {pairs} | {loss} | {acc_base:.1f}% | {acc_trained} |")
EOF
