"""Which pairs train: the selected pairs of every pairs file merged into one CSV (SPEC §8).

    merge_all_pairs(pair_files, output, n_tasks, n_pairs, ...)   per dataset, the N tasks with most
                                                                 selected pairs, then P of their
                                                                 pairs drawn with a fixed seed

Streaming: two passes over the pair files (count, then copy the kept rows as their JSON text), so
memory holds one row plus a counter per task. The output has a `dataset` and a `source` column
before the pair columns of densepolicy/pairs.py.
"""
import heapq
import random
import sys
from pathlib import Path

from densepolicy.pairs import PAIR_COLUMNS, PairsError, dataset_of
from densepolicy.results import AtomicResultWriter, iter_results


def selected_counts(files):
    """{dataset: {(file, data_id): selected pairs}} in first-seen order, one streaming pass."""
    counts = {}
    for f in files:
        ds = dataset_of(f)
        per = counts.setdefault(ds, {})
        for i, row in iter_results(f, raw=True):  # raw JSON text: compared, not decoded
            if row["selected"] == "true":
                k = (str(f), row["data_id"])
                per[k] = per.get(k, 0) + 1
    return counts


def merge_all_pairs(pair_files, output, n_tasks=None, n_pairs=None, default_density=None,
                    seed=0, log=print):
    """Selected pairs of every file -> one CSV (a `dataset` and a `source` column first).

    Per dataset (file-name prefix): keep the N tasks with most selected pairs (ties: first seen),
    then keep P of their pairs chosen uniformly at random with a fixed seed; if they hold fewer
    than P, keep them all (never upsample). n_tasks / n_pairs: {dataset: N / P}; a dataset not
    listed keeps all its tasks and, with default_density, at most density x tasks pairs.
    """
    n_tasks, n_pairs = n_tasks or {}, n_pairs or {}
    files = [Path(f) for f in pair_files]
    if not files:
        raise PairsError("no pair files to merge (run --process_result first, or pass --pair_files)")
    counts = selected_counts(files)
    keep = {}  # (file, data_id) -> set of kept ordinal positions among that dataset's pairs
    plan = {}
    for ds, per in counts.items():
        total = sum(per.values())
        if total == 0:
            print(f"warning: dataset {ds}: no selected pairs in "
                  f"{', '.join(str(f) for f in files if dataset_of(f) == ds)}", file=sys.stderr)
            plan[ds] = dict(tasks=0, pairs=0, available=0)
            continue
        order = {k: j for j, k in enumerate(per)}
        n = n_tasks.get(ds)
        tasks = [k for k, c in per.items() if c > 0]
        if n is not None and n < len(tasks):
            tasks = heapq.nsmallest(n, tasks, key=lambda k: (-per[k], order[k]))
        tasks.sort(key=order.__getitem__)  # file order, so positions below are stream order
        available = sum(per[k] for k in tasks)
        p = n_pairs.get(ds)
        if p is None and default_density is not None and ds not in n_tasks:
            p = int(default_density * len(tasks))
        if p is not None and p < available:
            picked = sorted(random.Random(f"{seed}:{ds}").sample(range(available), p))
        else:
            picked = None  # all of them: never upsample
            if p is not None and p > available:
                print(f"warning: dataset {ds}: asked for {p} pairs but its {len(tasks)} tasks hold "
                      f"{available}; keeping all (no upsampling)", file=sys.stderr)
        # Turn global positions into per-task ordinals (pairs of a task are consecutive within
        # its file's stream, and tasks are in stream order).
        start, it = 0, iter(picked or [])
        nxt = next(it, None)
        for k in tasks:
            c = per[k]
            if picked is None:
                keep[k] = None
            else:
                s = set()
                while nxt is not None and nxt < start + c:
                    s.add(nxt - start)
                    nxt = next(it, None)
                keep[k] = s
            start += c
        plan[ds] = dict(tasks=len(tasks), pairs=len(picked) if picked is not None else available,
                        available=available)
    if not keep:
        raise PairsError(f"no selected pairs in any of {len(files)} pair file(s); nothing to merge")
    seen = {}
    written = 0
    with AtomicResultWriter(output, ["dataset", "source"] + PAIR_COLUMNS) as w:
        for f in files:
            ds = dataset_of(f)
            for i, row in iter_results(f, raw=True):
                if row["selected"] != "true":
                    continue
                k = (str(f), row["data_id"])
                if k not in keep:
                    continue
                ordinal = seen.get(k, 0)
                seen[k] = ordinal + 1
                if keep[k] is not None and ordinal not in keep[k]:
                    continue
                # Cells stay as their JSON text: no decode/encode round trip for pass-through.
                w.add_cells([ds, str(f)] + [row[c] for c in PAIR_COLUMNS])
                written += 1
    for ds, pl in plan.items():
        log(f"[merge_all_pairs] {ds}: {pl['tasks']} tasks, {pl['pairs']} of {pl['available']} "
            f"selected pairs kept")
    log(f"[merge_all_pairs] {written} pairs from {len(files)} file(s) -> {output}")
    return dict(written=written, plan=plan, output=str(output))
