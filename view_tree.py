"""Look at dense trees in a browser: a tree result file -> one self-contained HTML page.

    python view_tree.py eval_results/.../gsm8k.None_split_0.0.None.csv --index 3
    python view_tree.py eval_results/.../gsm8k.None_split_0.0.None.csv --out report.html

Without --index the page covers every task (a table, then each tree, collapsed). Thin CLI over
densepolicy.viewer; thresholds default to densepolicy/tree.py's, as post_process_training_data.py's
do, so the chosen and rejected siblings shown are the pairs that script extracts.
"""
import argparse
import sys

from densepolicy.tree import add_pair_flags
from densepolicy.viewer import ViewerError, render


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("result_csv", help="a tree result file (codeact_agent_tree), shard or merged")
    ap.add_argument("--index", help="the task index (the `index` column) to show; default: every task")
    ap.add_argument("--out", help="HTML file to write (default: next to the CSV, <name>.tree[_N].html)")
    add_pair_flags(ap)
    args = ap.parse_args(argv)
    try:
        out = render(args.result_csv, args.out, args.index, args.thre_value, args.thre_max,
                     args.max_length)
    except (ViewerError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
