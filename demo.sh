#!/usr/bin/env bash
# The main job: the whole pipeline on the embedded model, on a CPU, end to end.
#   trees on train tasks -> merge -> preference pairs -> LLaMA-Factory dataset -> DPO (LoRA, CPU)
#   -> merge the adapter -> base and trained model on the same held-out episodes, greedy and
#   sampled -> accuracies with 95% intervals, paired tests, pair counts (summary.json).
# Sets everything up first (idempotent). Every constant below can be given as a flag:
#   ./demo.sh --tree_tasks 40 --train_args "max_steps=16 learning_rate=5.0e-4"
# Outputs go to OUT/run-<hash of every setting below but OUT, START_ID, PORT_BASE, of the
# engine (ENGINE, VLLM_CPU_DTYPE, VLLM_CPU_COMPILE) and of the training precision (bf16 mixed
# precision on a CPU with native bfloat16)>/: a run with other settings never reuses
# another's trees, model or evaluation rows; the same command again
# resumes where it stopped. DRY_RUN=1 prints the run directory only. The job itself is
# pipeline/demo.py (`.venv/bin/python -m pipeline.demo --help`), on the stages it shares with the
# density study (pipeline/stages.py).
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
# 64 tasks in flight, not the agent's 16: the CPU server's throughput grows with its batch (greedy
# 200 tasks 144 s -> 78 s, sampled 148 s -> 123 s, same greedy outcomes on every task; README).
EVAL_ARGS="--n_icl 2 --max_steps 3 --max_tokens 48 --concurrency 64"
TRAIN_ARGS="max_steps=12 learning_rate=5.0e-4"
CUTOFF_LEN=1024            # one value: prepare_dataset's length filter and LLaMA-Factory's cutoff_len
PAIR_EXAMPLES=none         # pair prompts: none (SPEC §8) or sampled (the in-context examples the trees saw)
OUT=eval_results/demo      # everything this job writes
START_ID=900               # tmux session ids used by this job
PORT_BASE=8400
# -------------------------------------------------------------------------------------------------

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
[[ "${DRY_RUN:-0}" == 1 ]] || { ./setup.sh && ./setup_treedpo.sh; }
# Flags given to this script (--name value) come after the constants, so they win.
exec .venv/bin/python -m pipeline.demo --model="$MODEL" --dataset="$DATASET" --tree_tasks="$TREE_TASKS" \
  --tree_args="$TREE_ARGS" --eval_tasks="$EVAL_TASKS" --sampled_tasks="$SAMPLED_TASKS" --samples="$SAMPLES" \
  --eval_args="$EVAL_ARGS" --train_args="$TRAIN_ARGS" --cutoff_len="$CUTOFF_LEN" --pair_examples="$PAIR_EXAMPLES" \
  --out="$OUT" --start_id="$START_ID" --port_base="$PORT_BASE" "$@"
