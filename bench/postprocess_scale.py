"""Scale benchmark of the pair post-processing: synthetic tree results for 1k, 10k and 100k tasks
through process_result, merge_all_pairs and prepare_dataset, each stage in its own process so its
peak memory (max RSS) is its own.

    .venv/bin/python bench/postprocess_scale.py [--sizes 1000 10000 100000] [--rollouts 100]
        [--rollouts_large 20] [--large_from 100000] [--workdir /tmp/pp_bench] [--keep]

Synthetic trees have the shape of real ones: B=10 labels, depth D=8, round 0 (i,0,...,0) then
random completions of random prefixes of earlier rollouts; a new node ends its episode with
some probability (solved or failed, per-branch success rates, many tasks all-fail or all-solve),
always at depth D. Every node has its own action text (about 100 characters) and observation.
Sizes >= --large_from use --rollouts_large rollouts per tree instead of --rollouts: a full-size
row (200 rollouts) is ~250 KB of JSON, so 100k of them would be a ~25 GB input file, more than this
machine's time budget allows to even write; the reduction is printed next to the numbers.
Time per rollout and per pair is printed so that linear growth is visible across sizes.
"""
import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path


from agents.prompts import pair_prompt
from densepolicy import lf_export, pair_selection
from densepolicy import pairs as pairs_lib
from densepolicy.results import AtomicResultWriter
from densepolicy.tree import run_key

B, D = 10, 8
COLUMNS = ["index", "input", "target", "score", "res", "res_cur", "full_index", "steps", "history",
           "policies", "log_infos"]


def synth_tree(rng, n_rollouts):
    """{run index: outcome} and {run index: steps} grown like the sampler grows a tree."""
    kind = rng.random()
    if kind < 0.3:
        p_task = 0.0            # never solved: no pairs
    elif kind < 0.45:
        p_task = 1.0            # always solved: no pairs
    else:
        p_task = rng.random()
    p_branch = [min(1.0, max(0.0, p_task + rng.uniform(-0.4, 0.4))) for _ in range(B)]
    done, open_nodes, runs = {}, set(), {}
    order = []
    labels_list = [(i,) + (0,) * (D - 1) for i in range(B)]
    while len(runs) < n_rollouts and len(labels_list) < 20 * n_rollouts:
        if len(labels_list) <= len(order):  # propose a completion of a random earlier prefix
            base = rng.choice(order)
            k = rng.randrange(0, len(base))
            labels_list.append(base[:k] + tuple(rng.randrange(B) for _ in range(D - k)))
        labels = labels_list[len(order)]
        order.append(labels)
        for d in range(1, D + 1):
            node = labels[:d]
            if node in done:
                break
            if node in open_nodes:
                continue
            if d == D or rng.random() < 0.12 * d / 2:
                done[node] = 1 if rng.random() < p_branch[node[0]] * (0.6 + 0.1 * d) else 0
                runs[node] = done[node]
                break
            open_nodes.add(node)
    return runs


def action_text(node):
    key = run_key(node)
    a, b = 3 + sum(node) % 17, 2 + len(node)
    return (f"Step {len(node)} on branch {key}: multiply the two known quantities first.\n"
            f"Action:\nx = {a} * {b}\nprint(x)\nEnd Action")


def synth_row(i, rng, n_rollouts):
    runs = synth_tree(rng, n_rollouts)
    keys = {r: run_key(r) for r in runs}
    hist = {}
    for r, o in runs.items():
        msgs = []
        for d in range(1, len(r) + 1):
            node = r[:d]
            msgs.append({"role": "assistant", "content": action_text(node)})
            if d < len(r) or not o:
                msgs.append({"role": "user", "content": str((3 + sum(node) % 17) * (2 + d))})
        hist[keys[r]] = msgs
    temps = {0: 0.0, 1: 1.0, 2: 0.5}
    return {"index": i, "input": f"Problem {i}: a shop sells pens in packs of 12. How many pens are in "
                                 f"{i % 50 + 2} packs?", "target": str(12 * (i % 50 + 2)),
            "score": float(any(runs.values())), "res": list(runs.values()),
            "res_cur": {keys[r]: o for r, o in runs.items()},
            "full_index": {keys[r]: list(r) + [0] * (D - len(r)) for r in runs},
            "steps": {keys[r]: len(r) for r in runs}, "history": hist,
            "policies": {keys[r]: [0.0 if x == 0 else temps.get(x % 3, 0.7) if x % 3 else 0.7 for x in r]
                         for r in runs},
            "log_infos": {"env_state": None, "rollouts": len(runs), "rounds": 0, "contrast_pairs": 0,
                          "nodes": 0, "runs": {}}}


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stage(args):
    """One stage in this process; prints a JSON line with its time and peak memory."""
    t = time.perf_counter()
    quiet = lambda *_: None  # noqa: E731
    w = Path(args.workdir)
    if args.stage == "generate":
        rng = random.Random(args.n)
        out = w / "eval_results" / "run" / "gsm8k.None_split_0.0.None.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        rollouts = 0
        with AtomicResultWriter(out, COLUMNS) as f:
            for i in range(args.n):
                row = synth_row(i, rng, args.rollouts)
                rollouts += len(row["res_cur"])
                f.add(row)
        info = dict(rollouts=rollouts, mb=out.stat().st_size / 2**20)
    elif args.stage == "process":
        run = w / "eval_results" / "run"
        s = pairs_lib.process_result([run / "gsm8k.None_split_0.0.None.csv"], run / "gsm8k", "gsm8k",
                                     lambda row, env: pair_prompt(row, "gsm8k", env), n_draw=1,
                             out_name="gsm8k.None_split_0.0.None.pairs.csv", log=quiet)
        info = dict(pairs=s["pairs"], selected=s["selected"])
    elif args.stage == "merge":
        # gsm8k has no N/P constant: the default density (10 pairs per task) applies.
        s = pair_selection.merge_all_pairs(pairs_lib.discover_pair_files(w / "eval_results"), w / "merged_pairs.csv",
                              default_density=10, log=quiet)
        info = dict(pairs=s["written"])
    else:
        from densepolicy.models import resolve_model
        s = lf_export.prepare_dataset(w / "merged_pairs.csv", w / "data", "tree_dpo", resolve_model(args.model),
                              log=quiet)
        info = dict(records=s["kept"], dropped=s["dropped_too_long"])
    print(json.dumps(dict(info, seconds=time.perf_counter() - t, peak_mb=peak_mb())))


def run_stage(name, n, rollouts, workdir, model):
    r = subprocess.run([sys.executable, __file__, "--stage", name, "--n", str(n), "--rollouts", str(rollouts),
                        "--workdir", str(workdir), "--model", model], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"error: stage {name} for {n} tasks failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    ap.add_argument("--rollouts", type=int, default=100, help="rollouts per tree (target)")
    ap.add_argument("--rollouts_large", type=int, default=20, help="rollouts per tree for large sizes")
    ap.add_argument("--large_from", type=int, default=100000)
    ap.add_argument("--workdir", default="/tmp/pp_bench")
    ap.add_argument("--model", default="SmolLM2-135M-Instruct")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        return stage(args)
    summary = []
    t_all = time.perf_counter()
    for n in args.sizes:
        r = args.rollouts_large if n >= args.large_from else args.rollouts
        w = Path(args.workdir) / f"n{n}"
        shutil.rmtree(w, ignore_errors=True)
        note = "" if r == args.rollouts else f"  (REDUCED: {r} rollouts/tree instead of {args.rollouts})"
        print(f"== {n} tasks, up to {r} rollouts per tree{note}", flush=True)
        g = run_stage("generate", n, r, w, args.model)
        print(f"   input: {g['rollouts']} rollouts ({g['rollouts'] / n:.0f}/tree), {g['mb']:.0f} MB, "
              f"generated in {g['seconds']:.1f} s", flush=True)
        row = dict(n=n, rollouts=g["rollouts"], mb=g["mb"])
        for name in ("process", "merge", "prepare"):
            s = run_stage(name, n, r, w, args.model)
            extra = {"process": lambda: f"{s['pairs']} pairs ({s['selected']} selected), "
                                        f"{1e6 * s['seconds'] / g['rollouts']:.1f} us/rollout",
                     "merge": lambda: f"{s['pairs']} pairs kept",
                     "prepare": lambda: f"{s['records']} records ({s['dropped']} over cutoff), "
                                        f"{1e6 * s['seconds'] / max(s['records'], 1):.0f} us/record"}[name]()
            print(f"   {name:8s} {s['seconds']:8.1f} s  peak {s['peak_mb']:7.0f} MB  {extra}", flush=True)
            row[name] = s
        summary.append(row)
        if not args.keep:
            shutil.rmtree(w, ignore_errors=True)
    print("summary: " + "; ".join(
        f"{r['n']} tasks/{r['rollouts']} rollouts: process {r['process']['seconds']:.1f}s "
        f"({r['process']['peak_mb']:.0f} MB), merge {r['merge']['seconds']:.1f}s ({r['merge']['peak_mb']:.0f} MB), "
        f"prepare {r['prepare']['seconds']:.1f}s ({r['prepare']['peak_mb']:.0f} MB)" for r in summary)
        + f"; total {time.perf_counter() - t_all:.0f}s")


if __name__ == "__main__":
    main()
