"""Trees -> step-level preference pairs (SPEC §8): the pairs file format and its extraction.

The pipeline, each stage streaming (one tree or one pair row in memory at a time, plus small
counters), so that 100k-task runs fit in a few hundred MB:

  process_result(result_files, out_dir, dataset)  here: one tree per result row -> <stem>.pairs.csv,
                                                  a histogram PNG, a few tree drawings (SVG) made
                                                  by densepolicy/pair_figures.py
  merge_all_pairs(pair_files, output, ...)        densepolicy/pair_selection.py: selected pairs,
                                                  top-N tasks per dataset, seeded downsampling
  prepare_dataset(pairs_file, data_dir, name)     densepolicy/lf_export.py: LLaMA-Factory DPO
                                                  records + dataset_info.json entry

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
import json
import sys
from pathlib import Path

from densepolicy.pair_figures import PairStats, draw_tree_svg, node_temperature
from densepolicy.results import AtomicResultWriter, MissingColumnsError, iter_results
from densepolicy.tree import MAX_LENGTH, THRE_MAX, THRE_VALUE, parse_run_key, run_key, sibling_pairs, tree_stats

PAIR_COLUMNS = ["data_id", "input", "target", "contrast_step"] + [
    f"{side}_{f}" for side in ("positive", "negative")
    for f in ("run_index", "history", "visit_number", "value", "avg_depth")] + ["selected"]
PAIRS_SUFFIX = ".pairs.csv"


class PairsError(ValueError):
    """Input that cannot be turned into pairs; the message is one line naming file and row."""


# ------------------------------------------------------------------------------ pairs files
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


def runs_through(runs) -> dict:
    """{node: the runs through it, in the order of `runs`}. Each of them holds the node's action
    in its history (nodes are cached during sampling), so any one can stand for the node."""
    through = {}
    for run in runs:
        for d in range(1, len(run) + 1):
            through.setdefault(run[:d], []).append(run)
    return through


def node_action(history, key, depth) -> tuple[str, list]:
    """(the action at `depth`, the messages) of run `key` in a row's history map: turns alternate
    action, observation, so that action is message 2 * (depth - 1). ValueError naming the run when
    its history does not hold it."""
    msgs = history.get(key)
    if not isinstance(msgs, list) or len(msgs) < 2 * depth - 1:
        raise ValueError(f"run {key!r}: history has {len(msgs) if isinstance(msgs, list) else 0}"
                         f" messages, the action at depth {depth} needs {2 * depth - 1}")
    m = msgs[2 * (depth - 1)]
    if not isinstance(m, dict) or m.get("role") != "assistant" or not isinstance(m.get("content"), str):
        raise ValueError(f"run {key!r}: message {2 * (depth - 1)} is not an assistant message")
    return m["content"], msgs


def tree_pairs(row, prompt, thre_value=THRE_VALUE, thre_max=THRE_MAX, max_length=MAX_LENGTH,
               keep_truncated=False):
    """(pair rows, stats, pairs dropped {"identical": n, "truncated": m, "sandbox_error": k}) of
    one result row.

    A pair is dropped when its two actions are the same text, when a rollout through either side
    met a sandbox failure (its outcome says nothing about the actions), or (unless keep_truncated) when a
    reply cut off at max_tokens (finish_reason "length") would be trained on as something the
    model wrote: as the chosen side (DPO would teach replies that stop mid-word), or as a rejected
    action the agent closed with an `End Action` the model never wrote. A cut-off reply with no
    action (the small model rambling until its budget ends) is stored verbatim and stays a
    rejected side: it is the failure the pair teaches against.

    Raises ValueError (message without file/row; the caller adds them) on a malformed tree.
    """
    runs, nsteps = parse_tree(row)
    if not runs:
        return [], {}, {"identical": 0, "truncated": 0, "sandbox_error": 0}
    history = row.get("history")
    if not isinstance(history, dict):
        raise ValueError("history is not a map of run index -> messages")
    stats = tree_stats(runs, nsteps)
    rep = {node: run_key(through[0]) for node, through in runs_through(runs).items()}
    out, dropped = [], {"identical": 0, "truncated": 0, "sandbox_error": 0}
    run_logs = (row.get("log_infos") or {}).get("runs") if isinstance(row.get("log_infos"), dict) else None
    broken_runs = {key for key, log in (run_logs or {}).items()
                   if any(step.get("sandbox_error") for step in log.get("steps") or [])}
    # Every node a run with a sandbox failure passes through: its value carries that outcome.
    broken = {run[:d] for run in runs if run_key(run) in broken_runs for d in range(1, len(run) + 1)}

    def truncated(node, chosen: bool) -> bool:
        steps = (run_logs or {}).get(rep[node], {}).get("steps") or []
        if len(steps) < len(node) or steps[len(node) - 1].get("finish_reason") != "length":
            return False
        # Logs without the parsed kind predate it: treat them as completed, i.e. drop.
        return chosen or steps[len(node) - 1].get("reply", "action") == "action"

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
        a_text, msgs = node_action(history, rep[chosen], d)
        b_text, _ = node_action(history, rep[rejected], d)
        if a_text.strip() == b_text.strip():
            dropped["identical"] += 1
            continue
        if chosen in broken or rejected in broken:
            dropped["sandbox_error"] += 1
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


def process_result(result_files, out_dir, dataset, prompt_for, out_name=None, thre_value=THRE_VALUE,
                   thre_max=THRE_MAX, max_length=MAX_LENGTH, n_draw=3, skip_bad_rows=False,
                   keep_truncated=False, log=print):
    """Result file(s) of one dataset -> out_dir/<out_name> pairs CSV, histogram, tree drawings.
    `prompt_for(row, env_state)` gives a row's preference prompt (agents.prompts.pair_prompt; a
    ValueError from it is that row's error).

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
                    # The prompt may depend on the example set the row records.
                    used = json.dumps(row["log_infos"].get("examples")) \
                        if isinstance(row.get("log_infos"), dict) else None
                    key = (goal, env_state, used)
                    if key not in prompt_cache:
                        prompt_cache.clear()  # only consecutive repeats matter; keep O(1) memory
                        prompt_cache[key] = prompt_for(row, env_state)
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
                    policies = row["policies"] if isinstance(row.get("policies"), dict) else {}
                    to_draw.append((row.get("index"), parse_tree(row)[0], stats, pairs, policies))
        if st.tasks == 0:
            raise PairsError(f"{', '.join(map(str, result_files))}: no task rows")
    for index, runs, stats, pairs, policies in to_draw:
        svg = out_dir / "trees" / f"{stem}.tree_{index}.svg"
        temperatures = {node: node_temperature(node, policies.get(run_key(through[0])))
                        for node, through in runs_through(runs).items()}
        draw_tree_svg(svg, runs, stats, pairs, temperatures,
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
                   dropped_sandbox_error=st.dropped_sandbox_error,
                   empty_trees=st.empty,
                   skipped_rows=skipped, output=str(out_path), histogram=str(hist), trees=drawn)
    log(f"[process_result] {dataset}: {st.tasks} tasks, {st.pairs} pairs ({st.selected} selected, "
        f"{st.dropped_identical} identical-action pairs dropped, {st.dropped_truncated} dropped as cut off at "
        f"max_tokens, {st.dropped_sandbox_error} over a sandbox failure, {st.empty} empty trees) -> {out_path}")
    return summary


def discover_pair_files(root="eval_results"):
    """Every per-tree pairs file under root (what process_result writes), sorted."""
    return sorted(p for p in Path(root).rglob(f"*{PAIRS_SUFFIX}") if p.is_file())
