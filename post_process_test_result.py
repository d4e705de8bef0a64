"""Merge distributed shard results and print scores (SPEC §7).

    python post_process_test_result.py --merge_distributed_result --data_dir DIR \
        --dataset_file_name_list 'gsm8k.None_split_0.0.{}.csv'
    python post_process_test_result.py --see_score --data_dir DIR --dataset_file_name_list 'gsm8k.None_split_0.0.{}.csv'
"""
import argparse
import sys

import dataset
from densepolicy.merge import max_trial_accuracy, merge, merged_file, result_rows, task_type_accuracy
from densepolicy.results import ResultFileError

# Task types every family breaks its scores down by (ALFWorld's six), from the dataset registry.
TASK_TYPES = [t for spec in dataset.families().values() for t in spec.task_types]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--merge_distributed_result", action="store_true")
    p.add_argument("--see_score", action="store_true")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--dataset_file_name_list", nargs="+", required=True,
                   help="file name patterns with '{}' where the shard id goes")
    args = p.parse_args(argv)
    if not (args.merge_distributed_result or args.see_score):
        p.error("say what to do: --merge_distributed_result and/or --see_score")
    try:
        for pattern in args.dataset_file_name_list:
            if args.merge_distributed_result:
                r = merge(args.data_dir, pattern)
                print(f"{pattern}: merged {r['shards']} shard file(s) "
                      f"(+{r['previously_merged']} rows merged before): {r['rows']} rows, "
                      f"{r['unique']} unique tasks, {r['duplicates']} duplicates dropped -> {r['path']}")
                print(f"score: {r['mean_score']:.2f}")
            if args.see_score:
                rows = result_rows(merged_file(args.data_dir, pattern))
                acc = max_trial_accuracy(rows)
                print(f"{pattern}: {len(rows)} tasks")
                print("  " + "  ".join(f"Max Trial {t}: {a:6.2f}" for t, a in acc.items()))
                types = task_type_accuracy(rows, TASK_TYPES)
                if types:
                    print("  " + "  ".join(f"{t}: {a:6.2f}" for t, a in types.items()))
    except (ResultFileError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
