"""Trees -> step-level preference pairs -> merged pair set -> LLaMA-Factory DPO records (SPEC §8-9).

Three stages, each streaming (one tree or one pair row in memory at a time, plus small
counters), so that 100k-task runs fit in a few hundred MB:

  process_result(result_file, out_dir, dataset)  one tree per result row -> <stem>.pairs.csv,
                                                 a histogram PNG, a few tree drawings (SVG)
  merge_all_pairs(pair_files, output, ...)       selected pairs, top-N tasks per dataset,
                                                 seeded uniform downsampling to P pairs
  prepare_dataset(pairs_file, data_dir, name)    {"instruction", "input", "chosen", "rejected",
                                                 "history"} records + dataset_info.json entry

Pair rows (CSV, every field quoted, structured cells JSON like result files):
  data_id, input, target, contrast_step,
  positive_run_index, positive_history, positive_visit_number, positive_value, positive_avg_depth,
  negative_run_index, negative_history, ..., selected
where *_run_index is the contrasted node (its label list), *_history the whole conversation up to
and including that node's action: the prompt without in-context examples, the earlier turns, and
the action. Both histories share everything but their last message.

Every output is written under a temporary name and renamed at the end, so a failure (bad input
raises PairsError, one line naming file and row) never leaves a partial file behind.
"""
import heapq
import json
import math
import os
import random
import sys
from pathlib import Path

from densepolicy.results import AtomicFile, AtomicResultWriter, MissingColumnsError, iter_results
from densepolicy.results import ResultFileError  # noqa: F401 (the CLIs catch it from here)
from densepolicy.tree import (MAX_LENGTH, THRE_MAX, THRE_VALUE, label_temperature, parse_run_key, run_key,
                              sibling_pairs, tree_stats)

PAIR_COLUMNS = ["data_id", "input", "target", "contrast_step"] + [
    f"{side}_{f}" for side in ("positive", "negative")
    for f in ("run_index", "history", "visit_number", "value", "avg_depth")] + ["selected"]
PAIRS_SUFFIX = ".pairs.csv"


class PairsError(ValueError):
    """Input that cannot be turned into pairs; the message is one line naming file and row."""


# ---------------------------------------------------------------------------------------- I/O
def dataset_of(path) -> str:
    """'gsm8k.None_split_0.0.None.csv' -> 'gsm8k' (the result-file naming of SPEC §6)."""
    return Path(path).name.split(".", 1)[0]


def require_columns(path, columns, what):
    """Fail before any work (or output folder) when `path` is not `what` at all: another CSV is
    named as such, with the columns it lacks; an unreadable file raises ResultFileError."""
    try:
        next(iter_results(path, raw=True, required=columns), None)
    except MissingColumnsError as e:
        raise PairsError(f"{path}: not {what}: no column {', '.join(e.missing)}") from None


# ------------------------------------------------------------------------- stage 1: tree -> pairs
def parse_tree(row) -> tuple[dict, dict]:
    """({run index: outcome}, {run index: steps}) of one result row; ValueError when the rollout
    maps are not what a tree result holds."""
    res_cur, steps = row.get("res_cur"), row.get("steps")
    if not isinstance(res_cur, dict):
        raise ValueError(f"res_cur is {type(res_cur).__name__}, not a map of run index -> 0/1")
    if not isinstance(steps, dict):
        steps = {}
    runs, nsteps = {}, {}
    for key, outcome in res_cur.items():
        try:
            run = parse_run_key(key)
        except ValueError:
            raise ValueError(f"run key {key!r} is not a comma-separated label list") from None
        if not run or outcome not in (0, 1, True, False, 0.0, 1.0):
            raise ValueError(f"run {key!r}: outcome {outcome!r} is not 0/1")
        runs[run] = int(outcome)
        s = steps.get(key, len(run))
        if not isinstance(s, (int, float)) or isinstance(s, bool):
            raise ValueError(f"run {key!r}: steps {s!r} is not a number")
        nsteps[run] = int(s)
    return runs, nsteps


PAIR_EXAMPLES = ("none", "sampled")


def pair_prompt(row, dataset, env_state=None, examples="none"):
    """The preference prompt. "none": instruction and goal in one user turn (SPEC §8); "sampled":
    the prompt the rollouts saw, in-context examples included, from the example set the tree row
    records (ValueError when it records none)."""
    from agents.prompts import build_messages
    from dataset import dataset_info
    info = dataset_info(dataset)
    if examples == "none":
        return build_messages(info["kind"], row["input"], n_icl=0, tools_doc=info.get("tools_doc"),
                              env_state=env_state, with_examples=False)
    used = (row.get("log_infos") or {}).get("examples") if isinstance(row.get("log_infos"), dict) else None
    if not isinstance(used, dict) or not isinstance(used.get("n"), int):
        raise ValueError("log_infos records no example set (trees sampled before it was recorded); "
                         "use --pair_examples none")
    return build_messages(info["kind"], row["input"], n_icl=used["n"], icl=used.get("set"),
                          tools_doc=info.get("tools_doc"), env_state=env_state)


def tree_pairs(row, prompt, thre_value=THRE_VALUE, thre_max=THRE_MAX, max_length=MAX_LENGTH,
               keep_truncated=False):
    """(pair rows, stats, pairs dropped {"identical": n, "truncated": m}) of one result row.

    A pair is dropped when its two actions are the same text, or (unless keep_truncated) when a
    reply cut off at max_tokens (finish_reason "length") would be trained on as something the
    model wrote: as the chosen side (DPO would teach replies that stop mid-word), or as a rejected
    action the agent closed with an `End Action` the model never wrote. A cut-off reply with no
    action (the small model rambling until its budget ends) is stored verbatim and stays a
    rejected side: it is the failure the pair teaches against.

    Raises ValueError (message without file/row; the caller adds them) on a malformed tree.
    """
    runs, nsteps = parse_tree(row)
    if not runs:
        return [], {}, {"identical": 0, "truncated": 0}
    history = row.get("history")
    if not isinstance(history, dict):
        raise ValueError("history is not a map of run index -> messages")
    stats = tree_stats(runs, nsteps)
    # Any run through a node holds that node's action (nodes are cached during sampling), so
    # one representative run key per node is enough.
    rep = {}
    for run in runs:
        key = run_key(run)
        for d in range(1, len(run) + 1):
            rep.setdefault(run[:d], key)
    out, dropped = [], {"identical": 0, "truncated": 0}
    run_logs = (row.get("log_infos") or {}).get("runs") if isinstance(row.get("log_infos"), dict) else None

    def truncated(node, chosen: bool) -> bool:
        steps = (run_logs or {}).get(rep[node], {}).get("steps") or []
        if len(steps) < len(node) or steps[len(node) - 1].get("finish_reason") != "length":
            return False
        # Logs without the parsed kind predate it: treat them as completed, i.e. drop.
        return chosen or steps[len(node) - 1].get("reply", "action") == "action"

    def action(node):
        key, d = rep[node], len(node)
        msgs = history.get(key)
        if not isinstance(msgs, list) or len(msgs) < 2 * d - 1:
            raise ValueError(f"run {key!r}: history has {len(msgs) if isinstance(msgs, list) else 0}"
                             f" messages, the action at depth {d} needs {2 * d - 1}")
        m = msgs[2 * (d - 1)]
        if not isinstance(m, dict) or m.get("role") != "assistant" or not isinstance(m.get("content"), str):
            raise ValueError(f"run {key!r}: message {2 * (d - 1)} is not an assistant message")
        return m["content"], msgs

    # A node's shared prefix and action are encoded to JSON once, not once per pair they are in:
    # histories are the bulk of the output and the encoding its cost.
    prefix_cache, action_json = {}, {}

    def history_json(node, text, parent):
        if node not in action_json:
            action_json[node] = json.dumps({"role": "assistant", "content": text}, ensure_ascii=False)
        return prefix_cache[parent][1] + action_json[node] + "]"

    for chosen, rejected, sc, sr, selected in sibling_pairs(stats, thre_value, thre_max):
        d = len(chosen)
        if d > max_length:
            continue
        a_text, msgs = action(chosen)
        b_text, _ = action(rejected)
        if a_text.strip() == b_text.strip():
            dropped["identical"] += 1
            continue
        if not keep_truncated and (truncated(chosen, True) or truncated(rejected, False)):
            dropped["truncated"] += 1
            continue
        parent = chosen[:-1]
        if parent not in prefix_cache:
            earlier = [{"role": m["role"], "content": m["content"]} for m in msgs[:2 * (d - 1)]]
            shared = prompt + earlier
            prefix_cache[parent] = (shared, json.dumps(shared, ensure_ascii=False)[:-1] + ", ")
        shared = prefix_cache[parent][0]
        out.append({
            "data_id": row.get("index"), "input": row.get("input", ""), "target": row.get("target", ""),
            "contrast_step": d,
            "positive_run_index": list(chosen),
            "positive_history": shared + [{"role": "assistant", "content": a_text}],
            "positive_visit_number": sc.visits, "positive_value": sc.value,
            "positive_avg_depth": sc.avg_depth,
            "negative_run_index": list(rejected),
            "negative_history": shared + [{"role": "assistant", "content": b_text}],
            "negative_visit_number": sr.visits, "negative_value": sr.value,
            "negative_avg_depth": sr.avg_depth,
            "selected": bool(selected),
            "_json": {"positive_history": history_json(chosen, a_text, parent),
                      "negative_history": history_json(rejected, b_text, parent)}})
    return out, stats, dropped


class PairStats:
    """Fixed-bin histograms of pair statistics, accumulated in O(1) memory."""

    def __init__(self):
        self.per_task = {}       # pairs per task -> tasks
        self.per_task_sel = {}
        self.delta = [0] * 20    # |Δvalue| in 20 bins over (0, 1]
        self.delta_sel = [0] * 20
        self.step = {}           # contrast step -> pairs
        self.step_sel = {}
        self.visits = {}         # floor(log2(min visits)) -> pairs
        self.tasks = self.pairs = self.selected = self.dropped_identical = self.dropped_truncated = 0
        self.empty = 0

    def add_task(self, pairs, dropped):
        self.tasks += 1
        self.dropped_identical += dropped["identical"]
        self.dropped_truncated += dropped["truncated"]
        n = len(pairs)
        ns = sum(1 for p in pairs if p["selected"])
        self.per_task[n] = self.per_task.get(n, 0) + 1
        self.per_task_sel[ns] = self.per_task_sel.get(ns, 0) + 1
        self.pairs += n
        self.selected += ns
        for p in pairs:
            b = min(int(abs(p["positive_value"] - p["negative_value"]) * 20 - 1e-9), 19)
            s = p["contrast_step"]
            v = int(math.log2(max(1, min(p["positive_visit_number"], p["negative_visit_number"]))))
            self.delta[b] += 1
            self.step[s] = self.step.get(s, 0) + 1
            self.visits[v] = self.visits.get(v, 0) + 1
            if p["selected"]:
                self.delta_sel[b] += 1
                self.step_sel[s] = self.step_sel.get(s, 0) + 1

    def plot(self, path):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(2, 2, figsize=(11, 8))

        def bars(a, counts, sel, xlabel, width=0.8):
            xs = sorted(counts)
            a.bar(xs, [counts[x] for x in xs], width=width, color="#9ab", label="all pairs")
            if sel is not None:
                a.bar(xs, [sel.get(x, 0) for x in xs], width=width * 0.6, color="#c53",
                      label="selected")
                a.legend()
            a.set_xlabel(xlabel)

        bars(ax[0, 0], {k: v for k, v in self.per_task.items()}, None, "pairs per task (tasks)")
        ax[0, 0].bar(sorted(self.per_task_sel), [self.per_task_sel[k] for k in sorted(self.per_task_sel)],
                     width=0.5, color="#c53", label="selected pairs per task")
        ax[0, 0].legend()
        bars(ax[0, 1], dict(enumerate(self.delta)), dict(enumerate(self.delta_sel)),
             "|value(chosen) - value(rejected)| (bin of 0.05)")
        ax[0, 1].set_xticks(range(0, 20, 4), [f"{i / 20:.1f}" for i in range(0, 20, 4)])
        bars(ax[1, 0], self.step, self.step_sel, "contrast step (depth of the contrasted action)")
        bars(ax[1, 1], self.visits, None, "floor(log2(min visits of the two siblings))")
        fig.suptitle(f"{self.tasks} tasks, {self.pairs} pairs, {self.selected} selected, "
                     f"dropped: {self.dropped_identical} identical-action, {self.dropped_truncated} cut at max_tokens")
        fig.tight_layout()
        tmp = Path(path).with_name(Path(path).name + ".tmp.png")
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        os.replace(tmp, path)


def draw_tree_svg(path, runs, stats, pairs, policies=None, title=""):
    """One tree as SVG: a node per explored label prefix (label, temperature, value, visits);
    chosen edges of selected pairs green, rejected ones red dashed; solved run ends gold."""
    children = {(): []}
    for node in sorted(stats):
        children.setdefault(node[:-1], []).append(node)
        children.setdefault(node, [])
    pos, leaf_x = {}, [0]

    def place(node, depth):  # leaves evenly spaced, parents centred over their children
        kids = children.get(node, [])
        if not kids:
            x = leaf_x[0]
            leaf_x[0] += 1
        else:
            xs = [place(k, depth + 1) for k in kids]
            x = (xs[0] + xs[-1]) / 2
        pos[node] = (x, depth)
        return x

    place((), 0)
    dx, dy, pad = 46, 70, 30
    depth = max((len(n) for n in stats), default=0)
    width, height = int(max(leaf_x[0], 1) * dx + 2 * pad), int(depth * dy + 2 * pad + 40)
    chosen = {tuple(p["positive_run_index"]) for p in pairs if p["selected"]}
    rejected = {tuple(p["negative_run_index"]) for p in pairs if p["selected"]}
    solved = {r for r, o in runs.items() if o}
    key_of = {}
    for run in runs:
        for d in range(1, len(run) + 1):
            key_of.setdefault(run[:d], run_key(run))

    def xy(node):
        x, d = pos[node]
        return pad + x * dx + dx / 2, pad + 40 + d * dy

    def esc(s):
        return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="9">',
           f'<text x="{pad}" y="18" font-size="13">{esc(title)}</text>',
           f'<text x="{pad}" y="32">green: chosen, red dashed: rejected (selected pairs); '
           f'gold ring: solved run end; node text: label, t=temperature, v=value, n=visits</text>']
    for node in stats:
        (x1, y1), (x2, y2) = xy(node[:-1]), xy(node)
        style = 'stroke="#bbb" stroke-width="1"'
        if node in chosen:
            style = 'stroke="#2a2" stroke-width="3"'
        elif node in rejected:
            style = 'stroke="#d22" stroke-width="3" stroke-dasharray="5,3"'
        out.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" {style}/>')
    x, y = xy(())
    out.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="6" fill="#444"/>')
    for node, (v, n, _avg_depth) in stats.items():
        x, y = xy(node)
        d = len(node)
        temp = label_temperature(node[-1])
        pol = (policies or {}).get(key_of[node])
        if isinstance(pol, list) and len(pol) >= d and isinstance(pol[d - 1], (int, float)):
            temp = pol[d - 1]
        red, green = int(220 * (1 - v)), int(180 * v)
        ring = ' stroke="#e90" stroke-width="3"' if node in solved else ' stroke="#333"'
        out.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="7" fill="rgb({red},{green},60)"{ring}>'
                   f'<title>{esc(run_key(node))}</title></circle>')
        out.append(f'<text x="{x:.0f}" y="{y + 17:.0f}" text-anchor="middle">{node[-1]} t={temp:g}</text>')
        out.append(f'<text x="{x:.0f}" y="{y + 27:.0f}" text-anchor="middle">v={v:.2f} n={n}</text>')
    out.append("</svg>")
    with AtomicFile(path) as w:
        w.write("\n".join(out))


def process_result(result_files, out_dir, dataset, out_name=None, thre_value=THRE_VALUE,
                   thre_max=THRE_MAX, max_length=MAX_LENGTH, n_draw=3, skip_bad_rows=False,
                   keep_truncated=False, examples="none", log=print):
    """Result file(s) of one dataset -> out_dir/<out_name> pairs CSV, histogram, tree drawings.

    Returns a summary dict. Raises PairsError on a malformed file or (unless skip_bad_rows) a
    malformed row; nothing is left under the output names then.
    """
    result_files = [Path(p) for p in result_files]
    for rf in result_files:
        require_columns(rf, ["res_cur"], "a tree result file (one codeact_agent_tree writes)")
    out_dir = Path(out_dir)
    out_name = out_name or (Path(result_files[0]).name.removesuffix(".csv") + PAIRS_SUFFIX)
    out_path = out_dir / out_name
    stem = out_name.removesuffix(".csv")
    st = PairStats()
    drawn, to_draw, skipped = [], [], 0
    prompt_cache = {}
    with AtomicResultWriter(out_path, PAIR_COLUMNS) as w:
        for rf in result_files:
            for i, row in iter_results(rf):
                where = f"{rf}: row {i} (index {row.get('index')!r})"
                try:
                    env_state = (row.get("log_infos") or {}).get("env_state") \
                        if isinstance(row.get("log_infos"), dict) else None
                    goal = row.get("input")
                    if not isinstance(goal, str):
                        raise ValueError("no 'input' text")
                    # The prompt depends on the example set a row records only with examples="sampled".
                    used = json.dumps(row["log_infos"].get("examples")) \
                        if examples != "none" and isinstance(row.get("log_infos"), dict) else None
                    key = (goal, env_state, used)
                    if key not in prompt_cache:
                        prompt_cache.clear()  # only consecutive repeats matter; keep O(1) memory
                        prompt_cache[key] = pair_prompt(row, dataset, env_state, examples)
                    pairs, stats, dropped = tree_pairs(row, prompt_cache[key],
                                                       thre_value, thre_max, max_length, keep_truncated)
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    if not skip_bad_rows:
                        raise PairsError(f"{where}: {e}") from None
                    print(f"warning: {where}: skipped ({e})", file=sys.stderr)
                    skipped += 1
                    continue
                if not stats:
                    print(f"warning: {where}: empty tree (no rollouts), no pairs", file=sys.stderr)
                    st.empty += 1
                st.add_task(pairs, dropped)
                for p in pairs:
                    w.add(p, p.get("_json"))
                if len(to_draw) < n_draw and any(p["selected"] for p in pairs):
                    # Drawn once the pairs file is complete: a failure leaves no outputs at all.
                    to_draw.append((row.get("index"), parse_tree(row)[0], stats, pairs, row.get("policies")))
        if st.tasks == 0:
            raise PairsError(f"{', '.join(map(str, result_files))}: no task rows")
    for index, runs, stats, pairs, policies in to_draw:
        svg = out_dir / "trees" / f"{stem}.tree_{index}.svg"
        draw_tree_svg(svg, runs, stats, pairs, policies,
                      title=f"{dataset} task {index}: {len(runs)} rollouts, {sum(runs.values())} solved, "
                            f"{sum(p['selected'] for p in pairs)} selected pairs")
        drawn.append(str(svg))
    hist = out_dir / f"{stem}.hist.png"
    st.plot(hist)
    if st.selected == 0:
        print(f"warning: {out_path}: no selected pairs (thre_value {thre_value}, thre_max "
              f"{thre_max}); merge_all_pairs will have nothing from this dataset", file=sys.stderr)
    summary = dict(tasks=st.tasks, pairs=st.pairs, selected=st.selected,
                   dropped_identical=st.dropped_identical, dropped_truncated=st.dropped_truncated,
                   empty_trees=st.empty,
                   skipped_rows=skipped, output=str(out_path), histogram=str(hist), trees=drawn)
    log(f"[process_result] {dataset}: {st.tasks} tasks, {st.pairs} pairs ({st.selected} selected, "
        f"{st.dropped_identical} identical-action pairs dropped, {st.dropped_truncated} dropped as cut off at "
        f"max_tokens, {st.empty} empty trees) -> {out_path}")
    return summary


# -------------------------------------------------------------------- stage 2: merge all pairs
def discover_pair_files(root="eval_results"):
    """Every per-tree pairs file under root (what process_result writes), sorted."""
    return sorted(p for p in Path(root).rglob(f"*{PAIRS_SUFFIX}") if p.is_file())


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


# ------------------------------------------------------------- stage 3: LLaMA-Factory records
def pair_record(row) -> dict:
    """Alpaca-style ranking record: the last user turn is the instruction, earlier turns the
    history, the two contrasted actions chosen/rejected."""
    pos, neg = row["positive_history"], row["negative_history"]
    if not (isinstance(pos, list) and isinstance(neg, list)) or len(pos) < 2 or len(neg) < 2:
        raise ValueError("histories must hold the prompt and an action")
    prompt = pos[:-1]
    if neg[:-1] != prompt:
        raise ValueError("chosen and rejected histories do not share their prompt")
    if pos[-1]["role"] != "assistant" or neg[-1]["role"] != "assistant":
        raise ValueError("the contrasted message is not an assistant action")
    roles = [m["role"] for m in prompt]
    if roles != ["user", "assistant"] * (len(prompt) // 2) + ["user"]:
        raise ValueError("prompt turns do not alternate user/assistant ending on user")
    return {"instruction": prompt[-1]["content"], "input": "",
            "chosen": pos[-1]["content"], "rejected": neg[-1]["content"],
            "history": [[prompt[j]["content"], prompt[j + 1]["content"]]
                        for j in range(0, len(prompt) - 1, 2)]}


class TokenCounter:
    """Prompt + response length in the policy's tokens, batched.

    Exact chat-template rendering per pair is slow (Jinja per record); instead message contents
    are tokenised in one fast-tokenizer batch call per chunk (duplicates, like a task's shared
    prompt, tokenised once) and the template's own tokens are added as a per-message overhead
    measured once from the tokenizer's chat template. This matches the rendered length up to
    merges across a message boundary (none for templates that put special tokens there).
    """

    def __init__(self, model_path):
        from transformers import AutoTokenizer
        self.tok = AutoTokenizer.from_pretrained(model_path)
        if getattr(self.tok, "chat_template", None):
            def n(msgs):
                ids = self.tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=False)
                if isinstance(ids, dict) or hasattr(ids, "keys"):
                    ids = ids["input_ids"]
                return len(ids)
            u, a = self._len("u"), self._len("a")
            one = n([{"role": "user", "content": "u"}]) - u
            two = n([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]) - u - a
            three = n([{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"},
                       {"role": "user", "content": "u"}]) - 2 * u - a
            self.base, self.assistant, self.user = one, two - one, three - two
        else:
            self.base, self.assistant, self.user = 0, 0, 0

    def _len(self, text):
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def lengths(self, records):
        """Token count of prompt + longer response for each record."""
        texts = {}
        for r in records:
            for t in (r["instruction"], r["chosen"], r["rejected"], *(x for h in r["history"] for x in h)):
                texts.setdefault(t, None)
        uniq = list(texts)
        if uniq:
            for t, ids in zip(uniq, self.tok(uniq, add_special_tokens=False)["input_ids"]):
                texts[t] = len(ids)
        out = []
        for r in records:
            n = self.base + texts[r["instruction"]] + max(texts[r["chosen"]], texts[r["rejected"]])
            n += self.assistant  # the response turn
            for h in r["history"]:
                n += texts[h[0]] + texts[h[1]] + self.user + self.assistant
            out.append(n)
        return out


def dataset_info_entry(file_name):
    return {"file_name": file_name, "ranking": True,
            "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                        "rejected": "rejected", "history": "history"}}


def update_dataset_info(data_dir, name, file_name):
    """Add or replace `name` in data_dir/dataset_info.json (other entries kept), atomically."""
    path = Path(data_dir) / "dataset_info.json"
    info = {}
    if path.exists():
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise PairsError(f"{path}: not valid JSON ({e}); fix or remove it") from None
        if not isinstance(info, dict):
            raise PairsError(f"{path}: expected a JSON object of dataset entries")
    info[name] = dataset_info_entry(file_name)
    with AtomicFile(path) as w:
        w.write(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    return path


def prepare_dataset(pairs_file, data_dir, name, model_path, cutoff_len=4096, chunk=4096,
                    log=print):
    """Selected pairs -> data_dir/<name>.json (a JSON list) + dataset_info.json entry."""
    if not Path(pairs_file).is_file():  # before the (slow) tokenizer load
        raise PairsError(f"{pairs_file}: no such file")
    require_columns(pairs_file, ["selected", "positive_history", "negative_history"], "a pairs file")
    counter = TokenCounter(model_path)
    out = Path(data_dir) / f"{name}.json"
    kept = too_long = unselected = 0
    with AtomicFile(out) as w:
        w.write("[")

        def flush(batch):
            nonlocal kept, too_long
            for rec, n in zip(batch, counter.lengths(batch)):
                if n > cutoff_len:
                    too_long += 1
                    continue
                w.write(("\n" if kept == 0 else ",\n") + json.dumps(rec, ensure_ascii=False))
                kept += 1

        batch = []
        for i, row in iter_results(pairs_file):  # pair rows, streaming, cells decoded
            if row.get("selected") is not True:
                unselected += 1
                continue
            try:
                batch.append(pair_record(row))
            except (ValueError, KeyError, TypeError) as e:
                raise PairsError(f"{pairs_file}: row {i}: {e}") from None
            if len(batch) >= chunk:
                flush(batch)
                batch = []
        flush(batch)
        if kept == 0:
            raise PairsError(f"{pairs_file}: no pair fits (selected pairs dropped over the cutoff "
                             f"of {cutoff_len} tokens: {too_long}; unselected rows: {unselected})")
        w.write("\n]\n")
    info = update_dataset_info(data_dir, name, out.name)
    log(f"[prepare_dataset] {kept} records -> {out} ({too_long} dropped over {cutoff_len} tokens, "
        f"{unselected} unselected rows skipped); registered '{name}' in {info}")
    return dict(kept=kept, dropped_too_long=too_long, unselected=unselected, output=str(out),
                dataset_info=str(info))
