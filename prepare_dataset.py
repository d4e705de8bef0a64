"""Merged preference pairs -> a LLaMA-Factory DPO dataset (SPEC §9). Thin CLI over densepolicy.lf_export.

    python prepare_dataset.py
        eval_results/merged_pairs.csv -> TreeDPO/data/tree_dpo.json, registered in
        TreeDPO/data/dataset_info.json as "tree_dpo" (ranking, alpaca columns with history)

Pairs whose prompt plus longer response exceed CUTOFF_LEN tokens of the policy model's own
tokenizer are dropped (and counted). Constants below; each has a flag of the same name.
"""
import argparse
import sys

from densepolicy.lf_export import prepare_dataset
from densepolicy.pairs import PairsError
from densepolicy.results import ResultFileError

INPUT = "eval_results/merged_pairs.csv"   # what post_process_training_data.py --merge_all_pairs writes
DATA_DIR = "TreeDPO/data"                 # LLaMA-Factory dataset_dir
NAME = "tree_dpo"                         # dataset name (file NAME.json, dataset_info key)
MODEL = "SmolLM2-135M-Instruct"           # policy whose tokenizer counts tokens (a name or a path)
CUTOFF_LEN = 4096


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", default=INPUT, help="merged pairs CSV")
    ap.add_argument("--data_dir", default=DATA_DIR, help="output directory (LLaMA-Factory dataset_dir)")
    ap.add_argument("--name", default=NAME, help="dataset name")
    ap.add_argument("--model", default=MODEL, help="model whose tokenizer counts tokens")
    ap.add_argument("--cutoff_len", type=int, default=CUTOFF_LEN)
    args = ap.parse_args(argv)
    from densepolicy.models import ModelError, resolve_model
    try:
        prepare_dataset(args.input, args.data_dir, args.name, resolve_model(args.model),
                        cutoff_len=args.cutoff_len)
    except (PairsError, ResultFileError, ModelError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
