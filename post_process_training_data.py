"""Tree results -> preference pairs (SPEC §8). Thin CLI over densepolicy.pairs and
densepolicy.pair_selection.

    python post_process_training_data.py --process_result --data_dir DIR \
        --dataset_file_name_list 'gsm8k.None_split_0.0.{}.csv' --data_sub_dir gsm8k \
        --dataset_file_name gsm8k.None_split_0.0.None.csv
        -> DIR/gsm8k/gsm8k.None_split_0.0.None.pairs.csv, .hist.png, trees/*.svg
    python post_process_training_data.py --merge_all_pairs
        -> every *.pairs.csv under eval_results/ -> eval_results/merged_pairs.csv

The constants below are the knobs; every one can be overridden by the flag of the same name.
"""
import argparse
import glob
import sys
from pathlib import Path

from agents import prompts
from dataset import DataError
from densepolicy import pair_selection, tree
from densepolicy import pairs as pairs_lib
from densepolicy.results import ResultFileError

# --- process_result ---------------------------------------------------------------------------
# The thresholds are defined once, in densepolicy/tree.py: the sampler counts selected pairs with
# them to stop a tree, and view_tree.py marks pairs with them. Change them there to change them
# everywhere; a literal here (or the flag) changes only what this script extracts.
THRE_VALUE = tree.THRE_VALUE  # |value(chosen) - value(rejected)| needed for a selected pair
THRE_MAX = tree.THRE_MAX      # cap of the visit threshold min(floor(2^avg_depth), THRE_MAX)
MAX_LENGTH = tree.MAX_LENGTH  # pairs at a contrast step deeper than this are not written
N_DRAW = 3            # trees drawn (SVG) per dataset

# --- merge_all_pairs: per dataset, N tasks with most selected pairs, then P pairs in total ----
# Original values (SPEC §8); P/N is the trajectory density of the paper's study.
N_PAIRS = {"math": 22331, "alfworld_cool": 665, "alfworld_put": 1170, "babyai": 908}
N_TASKS = {"math": 2334, "alfworld_cool": 20, "alfworld_put": 24, "babyai": 19}
# Datasets not listed above keep all their tasks and at most this many pairs per task
# (about math's density, 22331/2334); None keeps every selected pair.
DEFAULT_DENSITY = 10
SEED = 0
RESULTS_ROOT = "eval_results"                  # where pair files are discovered
MERGED_OUTPUT = "eval_results/merged_pairs.csv"


def key_values(items, flag):
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            sys.exit(f"error: {flag} expects DATASET=INTEGER, got {item!r}")
        out[name] = int(value)
    return out


def result_files(args):
    """The merged result file if present, else the shards matching the list pattern."""
    d = Path(args.data_dir)
    if args.dataset_file_name and (d / args.dataset_file_name).exists():
        return [d / args.dataset_file_name]
    found = []
    for pattern in args.dataset_file_name_list or []:
        for where in (d, d / "distributed_result"):
            found += glob.glob(str(where / glob.escape(pattern).replace("{}", "*")))
    merged = args.dataset_file_name
    found = sorted({f for f in found if Path(f).name != merged})
    if not found:
        sys.exit(f"error: {d}: neither {args.dataset_file_name} nor shards matching "
                 f"{args.dataset_file_name_list} (run post_process_test_result.py "
                 f"--merge_distributed_result first)")
    print(f"[process_result] {d / str(merged)} not found; reading {len(found)} shard(s)")
    return [Path(f) for f in found]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--process_result", action="store_true", help="trees -> pairs for one dataset")
    ap.add_argument("--merge_all_pairs", action="store_true", help="merge selected pairs of all datasets")
    ap.add_argument("--data_dir", help="run directory holding the result files")
    ap.add_argument("--dataset_file_name_list", nargs="+", help="shard pattern(s) with {} for the shard id")
    ap.add_argument("--dataset_file_name", help="merged result file name (shard id None)")
    ap.add_argument("--data_sub_dir", help="pairs are written to DATA_DIR/DATA_SUB_DIR/")
    ap.add_argument("--dataset", help="dataset name (default: the result file name's prefix)")
    tree.add_pair_flags(ap, THRE_VALUE, THRE_MAX, MAX_LENGTH)
    ap.add_argument("--n_draw", type=int, default=N_DRAW)
    ap.add_argument("--keep_truncated", action="store_true",
                    help="keep pairs with a reply cut off at max_tokens as a chosen side or as a completed action "
                         "(dropped and counted by default; an uncompleted cut-off rejected reply is always kept)")
    ap.add_argument("--pair_examples", choices=prompts.PAIR_EXAMPLES, default="none",
                    help="the pair prompt: 'none' drops the in-context examples (SPEC section 8), 'sampled' "
                         "keeps the ones the rollouts saw (recorded in each tree row)")
    ap.add_argument("--skip_bad_rows", action="store_true",
                    help="warn about and skip a malformed row instead of stopping")
    ap.add_argument("--results_root", default=RESULTS_ROOT, help="where *.pairs.csv are discovered")
    ap.add_argument("--pair_files", nargs="+", help="merge these pair files instead of discovering")
    ap.add_argument("--output", default=MERGED_OUTPUT, help="merged pairs file")
    ap.add_argument("--n_tasks", action="append", metavar="DATASET=N", help="override N_TASKS")
    ap.add_argument("--n_pairs", action="append", metavar="DATASET=P", help="override N_PAIRS")
    ap.add_argument("--default_density", type=float, default=DEFAULT_DENSITY,
                    help="pairs per task for datasets without N/P (negative: keep all)")
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    if not (args.process_result or args.merge_all_pairs):
        ap.error("give --process_result and/or --merge_all_pairs")
    try:
        if args.process_result:
            if not (args.data_dir and args.data_sub_dir and (args.dataset_file_name or args.dataset_file_name_list)):
                ap.error("--process_result needs --data_dir, --data_sub_dir and --dataset_file_name(_list)")
            files = result_files(args)
            dataset = args.dataset or pairs_lib.dataset_of(files[0])
            name = (args.dataset_file_name or files[0].name).removesuffix(".csv") + pairs_lib.PAIRS_SUFFIX
            pairs_lib.process_result(files, Path(args.data_dir) / args.data_sub_dir, dataset,
                                     lambda row, env: prompts.pair_prompt(row, dataset, env, args.pair_examples),
                                     out_name=name, thre_value=args.thre_value, thre_max=args.thre_max,
                                     max_length=args.max_length, n_draw=args.n_draw,
                                     skip_bad_rows=args.skip_bad_rows, keep_truncated=args.keep_truncated)
        if args.merge_all_pairs:
            files = args.pair_files or pairs_lib.discover_pair_files(args.results_root)
            n_tasks = {**N_TASKS, **key_values(args.n_tasks, "--n_tasks")}
            n_pairs = {**N_PAIRS, **key_values(args.n_pairs, "--n_pairs")}
            density = args.default_density if args.default_density is not None and args.default_density >= 0 else None
            pair_selection.merge_all_pairs(files, args.output, n_tasks=n_tasks, n_pairs=n_pairs,
                                           default_density=density, seed=args.seed)
    except (pairs_lib.PairsError, ResultFileError, DataError) as e:   # DataError: --dataset unknown
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
