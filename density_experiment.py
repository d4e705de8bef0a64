"""Density study: with the number of preference pairs fixed, do denser trees (more pairs per task,
fewer tasks) beat more tasks? One command, from already sampled trees to a table and a figure.

    python density_experiment.py --datasets gsm8k --total_pairs 2000 --densities 0.125,0.25,0.5,1.0

For each density: one training set with the same pair count per dataset (tasks = pairs / pairs
per task, SPEC §8), LLaMA-Factory DPO with TREEDPO_CONFIG, the adapter merged, the trained model
evaluated with the plain CodeAct agent through distributed_test.sh on the same test tasks as the
base model; then OUT/density_results.csv, .md and density.png. A density is a fraction of the
densest set the trees allow (1.0: the fewest tasks that hold the pairs; 0.5: twice the tasks,
half the pairs each), or pairs per task with --density_unit pairs_per_task; see
pipeline/density.py. Each stage is skipped when its output exists, so rerunning the same
command resumes an interrupted study.

Input: the *.pairs.csv files that `post_process_training_data.py --process_result` wrote under
--results_root (or --pair_files). Every constant below has a flag of the same name; flags whose
value starts with '-' take the form --eval_args="--n_icl 2".
"""
import argparse
import sys
from pathlib import Path

from densepolicy import pairs as pairs_lib
from pipeline.density import Study, StudyError, parse_densities, parse_total_pairs
from pipeline.stages import StageError

# ---- Editable constants (defaults: the embedded model on a CPU, like demo.sh) ---------------------
DATASETS = "babyai_GoToRedBallGrey"   # comma-separated; pair files are named <dataset>.*.pairs.csv
DENSITIES = "0.125,0.25,0.5,1.0"
DENSITY_UNIT = "fraction"             # fraction (of the densest set) or pairs_per_task
TOTAL_PAIRS = "auto"                  # per dataset: auto (largest that fits every density), P, DS=P,...
RESULTS_ROOT = "eval_results"         # where *.pairs.csv are discovered
OUT = "eval_results/density"          # everything the study writes
MODEL = "SmolLM2-135M-Instruct"       # the policy that sampled the trees (name or directory)
TREEDPO_CONFIG = "TreeDPO/smollm2_lora_dpo_cpu.yaml"
TREEDPO_VENV = ".venv-treedpo"        # where llamafactory-cli lives
TRAIN_ARGS = "max_steps=8 learning_rate=5.0e-4 cutoff_len=1024"   # key=value overrides of the config
CUTOFF_LEN = 4096                     # prepare_dataset: pairs longer than this (tokens) are dropped
EVAL_TASKS = "8"                      # first N test tasks per dataset ("all": every one)
EVAL_ARGS = "--n_icl 2 --max_steps 3 --max_tokens 48"   # AGENT_ARGS of distributed_test.sh
EVAL_PROCS = 1                        # PROCESSES_PER_GPU of distributed_test.sh
SEED = 0                              # merge_all_pairs' downsampling seed
START_ID = 950                        # tmux session ids of the evaluation runs
PORT_BASE = 8450                      # model server ports of the evaluation runs
# ----------------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", "--dataset", default=DATASETS, help="comma-separated datasets")
    ap.add_argument("--densities", default=DENSITIES, help="comma-separated densities")
    ap.add_argument("--density_unit", default=DENSITY_UNIT, choices=["fraction", "pairs_per_task"])
    ap.add_argument("--total_pairs", default=TOTAL_PAIRS,
                    help="pairs per training set and dataset: auto, P, or DS=P,DS2=P2")
    ap.add_argument("--results_root", default=RESULTS_ROOT, help="where *.pairs.csv are discovered")
    ap.add_argument("--pair_files", nargs="+", help="use these pair files instead of discovering")
    ap.add_argument("--out", default=OUT, help="study directory")
    ap.add_argument("--model", default=MODEL)
    ap.add_argument("--treedpo_config", default=TREEDPO_CONFIG)
    ap.add_argument("--treedpo_venv", default=TREEDPO_VENV)
    ap.add_argument("--train_args", default=TRAIN_ARGS, help="key=value overrides for llamafactory-cli")
    ap.add_argument("--cutoff_len", type=int, default=CUTOFF_LEN)
    ap.add_argument("--eval_tasks", default=EVAL_TASKS, help="test tasks per dataset (or 'all')")
    ap.add_argument("--eval_args", default=EVAL_ARGS, help="agent flags (AGENT_ARGS)")
    ap.add_argument("--eval_procs", type=int, default=EVAL_PROCS)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--start_id", type=int, default=START_ID)
    ap.add_argument("--port_base", type=int, default=PORT_BASE)
    ap.add_argument("--num_gpus", help="NUM_GPUS for the launcher (default: it counts them)")
    ap.add_argument("--verbose", action="store_true", help="also print every command's output")
    args = ap.parse_args(argv)
    if args.eval_tasks != "all" and not args.eval_tasks.isdigit():
        ap.error(f"--eval_tasks must be a number or 'all', got {args.eval_tasks!r}")
    try:
        datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
        if not datasets:
            raise StudyError("no dataset given")
        out = Path(args.out).resolve()
        files = args.pair_files or [f for f in pairs_lib.discover_pair_files(args.results_root)
                                    if out not in f.resolve().parents]
        study = Study(datasets=datasets, densities=parse_densities(args.densities), out=out,
                      pair_files=files, unit=args.density_unit,
                      total_pairs=parse_total_pairs(args.total_pairs, datasets), model=args.model,
                      treedpo_config=args.treedpo_config, treedpo_venv=args.treedpo_venv,
                      train_args=args.train_args, cutoff_len=args.cutoff_len,
                      eval_tasks=None if args.eval_tasks == "all" else int(args.eval_tasks),
                      eval_args=args.eval_args, eval_procs=args.eval_procs, seed=args.seed,
                      start_id=args.start_id, port_base=args.port_base, num_gpus=args.num_gpus,
                      verbose=args.verbose, log=lambda s: print(s, flush=True))
        study.run()
    except StudyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StageError as e:
        return e.report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
