"""Preference pairs from trees (SPEC §8-9): exact pairs of a hand-built tree, merge density knobs,
LLaMA-Factory records with the real tokenizer, and bad input through the real CLIs."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from agents.prompts import build_messages
from densepolicy import lf_export
from densepolicy import pairs as pairs_lib
from densepolicy.results import AtomicResultWriter, ResultWriter, iter_results, read_results, write_results
from densepolicy.tree import run_key

TREE_COLUMNS = ["index", "input", "target", "score", "res", "res_cur", "full_index", "steps",
                "history", "policies", "log_infos"]
GOAL = "Tom has 3 apples and buys 4 more. How many apples does he have?"

# A depth-3 tree. Run index -> outcome (done runs stop early: (0,1) and (2,) were solved).
#   (0,) -> (0,0) -> (0,0,0)=0, (0,0,1)=1 ; (0,1)=1           value(0,0)=.5, value(0,)=.75
#   (1,) -> (1,0) -> (1,0,0)=0 ; (1,1) -> (1,1,0)=1           value(1,)=.5 ((1,0)/(1,1) same action)
#   (2,)=1
RUNS = {(0, 0, 0): 0, (0, 0, 1): 1, (0, 1): 1, (1, 0, 0): 0, (1, 1, 0): 1, (2,): 1}


def action(node):
    if node in ((1, 0), (1, 1)):
        return "Same thought.\nAction:\nprint(3 + 4)\nEnd Action"  # identical text: dropped
    return f"Step {len(node)} via {','.join(map(str, node))}\nAction:\nprint({len(node)})\nEnd Action"


def obs(node):
    return f"observation after {','.join(map(str, node))}"


def history(run, solved):
    msgs = []
    for d in range(1, len(run) + 1):
        msgs.append({"role": "assistant", "content": action(run[:d])})
        if d < len(run) or not solved:
            msgs.append({"role": "user", "content": obs(run[:d])})
    return msgs


def tree_row(index, runs, goal=GOAL):
    keys = {r: run_key(r) for r in runs}
    return {"index": index, "input": goal, "target": "7", "score": float(any(runs.values())),
            "res": list(runs.values()),
            "res_cur": {keys[r]: o for r, o in runs.items()},
            "full_index": {keys[r]: list(r) + [0] * (3 - len(r)) for r in runs},
            "steps": {keys[r]: len(r) for r in runs},
            "history": {keys[r]: history(r, o) for r, o in runs.items()},
            "policies": {keys[r]: [0.0 if x == 0 else (0.7, 1.0, 0.5)[x % 3] for x in r] for r in runs},
            "log_infos": {"env_state": None, "rollouts": len(runs), "rounds": 2,
                          "contrast_pairs": 2, "nodes": 11, "runs": {}}}


def prompt():
    return build_messages("gsm8k", GOAL, n_icl=0, tools_doc=None, env_state=None, with_examples=False)


def expected_history(node):
    msgs = list(prompt())
    for d in range(1, len(node)):
        msgs += [{"role": "assistant", "content": action(node[:d])}, {"role": "user", "content": obs(node[:d])}]
    return msgs + [{"role": "assistant", "content": action(node)}]


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "eval_results" / "codeact_agent_tree.M" / "temperature_512_10_3"
    d.mkdir(parents=True)
    write_results(d / "gsm8k.None_split_0.0.None.csv", [tree_row(7, RUNS)], TREE_COLUMNS)
    return d


def process(run_dir, *extra):
    return run_cli("post_process_training_data.py", "--process_result", "--data_dir", str(run_dir),
                   "--dataset_file_name_list", "gsm8k.None_split_0.0.{}.csv", "--data_sub_dir", "gsm8k",
                   "--dataset_file_name", "gsm8k.None_split_0.0.None.csv", *extra)


def test_exact_pairs_of_a_hand_built_tree(run_dir):
    r = process(run_dir)
    assert r.returncode == 0, r.stderr
    out = run_dir / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv"
    rows = [row for _, row in iter_results(out)]
    assert list(rows[0]) == pairs_lib.PAIR_COLUMNS
    got = {(tuple(p["positive_run_index"]), tuple(p["negative_run_index"])):
           (p["positive_value"], p["positive_visit_number"], p["positive_avg_depth"],
            p["negative_value"], p["negative_visit_number"], p["negative_avg_depth"], p["selected"])
           for p in rows}
    assert got == {
        # Root siblings: (1,) has 2 visits but needs min(2^2, 8) = 4, so nothing there is selected.
        ((0,), (1,)): (0.75, 3, 5 / 3, 0.5, 2, 2.0, False),
        ((2,), (0,)): (1.0, 1, 0.0, 0.75, 3, 5 / 3, False),
        ((2,), (1,)): (1.0, 1, 0.0, 0.5, 2, 2.0, False),
        # Leaves need 1 visit, (0,0) with avg depth 1 needs 2: both pairs below are selected.
        ((0, 1), (0, 0)): (1.0, 1, 0.0, 0.5, 2, 1.0, True),
        ((0, 0, 1), (0, 0, 0)): (1.0, 1, 0.0, 0.0, 1, 0.0, True),
    }
    # (1,0) vs (1,1) differ in value but have the same action text: dropped.
    assert ((1, 1), (1, 0)) not in got
    assert "1 identical-action pairs dropped" in r.stdout
    for p in rows:
        assert p["data_id"] == 7 and p["input"] == GOAL and p["target"] == "7"
        node, other = tuple(p["positive_run_index"]), tuple(p["negative_run_index"])
        assert p["contrast_step"] == len(node)
        # Prompt without in-context examples: one user turn with instruction and goal.
        assert p["positive_history"] == expected_history(node)
        assert p["negative_history"] == expected_history(node)[:-1] + [
            {"role": "assistant", "content": action(other)}]
        assert "Now, let's move on" not in p["positive_history"][0]["content"]
    # Side outputs: histogram and drawings of the tree with marked edges.
    assert (run_dir / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.hist.png").stat().st_size > 1000
    svg = (run_dir / "gsm8k" / "trees" / "gsm8k.None_split_0.0.None.pairs.tree_7.svg").read_text()
    assert svg.count('stroke="#2a2"') == 2 and svg.count('stroke-dasharray') == 2  # chosen / rejected
    assert svg.count('stroke="#e90"') == 4  # solved run ends
    assert ">1 t=1<" in svg and ">2 t=0.5<" in svg and "v=0.75 n=3" in svg


def _pair_file(path, counts, seed_text="a"):
    """A pairs file with counts[i] selected pairs (plus one unselected) for task i."""
    w = AtomicResultWriter(path, pairs_lib.PAIR_COLUMNS)
    for task, n in enumerate(counts):
        for j in range(n + 1):
            h = [{"role": "user", "content": f"task {task}"}]
            w.add({"data_id": task, "input": f"task {task}", "target": "1", "contrast_step": 1,
                   "positive_run_index": [j], "positive_history": h + [{"role": "assistant", "content": f"good {seed_text}{task}.{j}"}],
                   "positive_visit_number": 1, "positive_value": 1.0, "positive_avg_depth": 0.0,
                   "negative_run_index": [j + 100], "negative_history": h + [{"role": "assistant", "content": f"bad {task}.{j}"}],
                   "negative_visit_number": 1, "negative_value": 0.0, "negative_avg_depth": 0.0,
                   "selected": j < n})
    w.commit()


def test_merge_top_tasks_seeded_downsampling_never_upsample(tmp_path):
    root = tmp_path / "eval_results"
    (root / "a" / "math").mkdir(parents=True)
    (root / "b" / "babyai").mkdir(parents=True)
    _pair_file(root / "a" / "math" / "math.None_split_0.0.None.pairs.csv", [5, 1, 9, 0, 7, 3])
    _pair_file(root / "b" / "babyai" / "babyai.None_split_0.0.None.pairs.csv", [2, 2])
    out = tmp_path / "merged.csv"

    def merge(*extra):
        r = run_cli("post_process_training_data.py", "--merge_all_pairs", "--results_root", str(root),
                    "--output", str(out), "--n_tasks", "math=3", "--n_pairs", "math=10",
                    "--n_tasks", "babyai=5", "--n_pairs", "babyai=100", *extra)
        assert r.returncode == 0, r.stderr
        return r, read_results(out)

    r, rows = merge()
    math_rows = [x for x in rows if x["dataset"] == "math"]
    # Top 3 tasks by selected pairs: 2 (9), 4 (7), 0 (5) -> 21 pairs, 10 drawn uniformly.
    assert len(math_rows) == 10 and {x["data_id"] for x in math_rows} <= {0, 2, 4}
    assert all(x["selected"] is True for x in rows)
    # babyai asks for 100 of 4: all 4 kept, never duplicated.
    baby = [(x["data_id"], x["positive_run_index"][0]) for x in rows if x["dataset"] == "babyai"]
    assert sorted(baby) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert "keeping all (no upsampling)" in r.stderr
    # Same seed, same sample; another seed, another sample.
    same = [(x["data_id"], x["positive_run_index"]) for x in merge()[1]]
    assert same == [(x["data_id"], x["positive_run_index"]) for x in rows]
    other = [(x["data_id"], x["positive_run_index"]) for x in merge("--seed", "1")[1]]
    assert other != same and len(other) == len(same)
    # Discovery found both files, named as sources.
    assert {x["source"].split("/")[-1] for x in rows} == {"math.None_split_0.0.None.pairs.csv",
                                                         "babyai.None_split_0.0.None.pairs.csv"}


def test_merge_dataset_without_selected_pairs(tmp_path):
    root = tmp_path / "eval_results"
    (root / "x").mkdir(parents=True)
    _pair_file(root / "x" / "gsm8k.None_split_0.0.None.pairs.csv", [0, 0])
    out = tmp_path / "merged.csv"
    r = run_cli("post_process_training_data.py", "--merge_all_pairs", "--results_root", str(root),
                "--output", str(out))
    assert r.returncode == 1 and not out.exists() and not out.with_name("merged.csv.tmp").exists()
    assert "warning: dataset gsm8k: no selected pairs in" in r.stderr
    assert "error: no selected pairs in any of 1 pair file(s)" in r.stderr
    _pair_file(root / "x" / "math.None_split_0.0.None.pairs.csv", [2])
    r = run_cli("post_process_training_data.py", "--merge_all_pairs", "--results_root", str(root),
                "--output", str(out))
    assert r.returncode == 0 and "dataset gsm8k: no selected pairs" in r.stderr
    assert len(read_results(out)) == 2


def test_prepare_dataset_records_cutoff_and_dataset_info(run_dir, tmp_path, model_path):
    assert process(run_dir).returncode == 0
    pairs = run_dir / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv"
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "o.json"}}))
    r = run_cli("prepare_dataset.py", "--input", str(pairs), "--data_dir", str(data), "--name", "t",
                "--model", model_path)
    assert r.returncode == 0, r.stderr
    recs = json.loads((data / "t.json").read_text())
    assert len(recs) == 2 and "0 dropped over 4096 tokens, 3 unselected rows skipped" in r.stdout
    by_chosen = {x["chosen"]: x for x in recs}
    deep = by_chosen[action((0, 0, 1))]
    assert deep == {"instruction": obs((0, 0)), "input": "", "chosen": action((0, 0, 1)),
                    "rejected": action((0, 0, 0)),
                    "history": [[prompt()[0]["content"], action((0,))], [obs((0,)), action((0, 0))]]}
    shallow = by_chosen[action((0, 1))]
    assert shallow["instruction"] == obs((0,)) and shallow["history"] == [[prompt()[0]["content"], action((0,))]]
    info = json.loads((data / "dataset_info.json").read_text())
    assert info["other"] == {"file_name": "o.json"}
    assert info["t"] == {"file_name": "t.json", "ranking": True,
                         "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen",
                                     "rejected": "rejected", "history": "history"}}
    # The batched count equals the tokenizer's own chat-template length of prompt + response.
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(model_path)
    counter = lf_export.TokenCounter(model_path)
    lens = counter.lengths(recs)
    for rec, n in zip(recs, lens):
        msgs = [m for u, a in rec["history"] for m in ({"role": "user", "content": u}, {"role": "assistant", "content": a})]
        msgs += [{"role": "user", "content": rec["instruction"]}]
        longer = max(rec["chosen"], rec["rejected"], key=lambda t: len(tok(t, add_special_tokens=False)["input_ids"]))
        ids = tok.apply_chat_template(msgs + [{"role": "assistant", "content": longer}], tokenize=True)
        ids = ids["input_ids"] if hasattr(ids, "keys") else ids
        assert n == len(ids)
    # A cutoff between the two lengths drops the longer pair, counts it, and re-running
    # updates the entry instead of duplicating it.
    # (In-process from here on: the CLI path is covered above, the tokenizer load is slow.)
    cut = min(lens)
    s = lf_export.prepare_dataset(pairs, data, "t", model_path, cutoff_len=cut, log=lambda *_: None)
    assert (s["kept"], s["dropped_too_long"]) == (1, 1)
    assert len(json.loads((data / "t.json").read_text())) == 1
    info2 = json.loads((data / "dataset_info.json").read_text())
    assert list(info2) == ["other", "t"]
    # Nothing fits: an error, and the previous dataset file is untouched.
    with pytest.raises(pairs_lib.PairsError, match="no pair fits"):
        lf_export.prepare_dataset(pairs, data, "t", model_path, cutoff_len=10, log=lambda *_: None)
    assert len(json.loads((data / "t.json").read_text())) == 1 and not (data / "t.json.tmp").exists()
    # A damaged dataset_info.json is reported, not overwritten.
    (data / "dataset_info.json").write_text("{broken")
    with pytest.raises(pairs_lib.PairsError, match="dataset_info.json: not valid JSON"):
        lf_export.update_dataset_info(data, "t", "t.json")
    assert (data / "dataset_info.json").read_text() == "{broken"


# ------------------------------------------------------------------------------ bad input
def _no_outputs(run_dir):
    sub = run_dir / "gsm8k"
    return not sub.exists() or not [p for p in sub.rglob("*") if p.is_file()]


def test_truncated_csv_last_row_is_ignored_with_warning(run_dir):
    path = run_dir / "gsm8k.None_split_0.0.None.csv"
    w = ResultWriter(path, TREE_COLUMNS)
    w.append(tree_row(8, {(0,): 1, (1,): 0}))
    data = path.read_bytes()
    path.write_bytes(data[:-200])  # a crash in the middle of the last row
    r = process(run_dir)
    assert r.returncode == 0, r.stderr
    assert "row 2: ignoring a partial last row" in r.stderr
    rows = list(iter_results(run_dir / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv"))
    assert {row["data_id"] for _, row in rows} == {7}


def test_malformed_csv_is_fatal_and_writes_nothing(run_dir):
    path = run_dir / "gsm8k.None_split_0.0.None.csv"
    path.write_bytes(path.read_bytes() + b'"1","2"\r\n' + path.read_bytes().split(b"\r\n", 1)[1])
    r = process(run_dir)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {path}: row 2 has 2 fields, expected")
    assert _no_outputs(run_dir)


def test_unparseable_rollout_maps(run_dir):
    path = run_dir / "gsm8k.None_split_0.0.None.csv"
    bad = tree_row(8, {(0,): 1, (1,): 0})
    bad["res_cur"] = {"0,x": 1}
    rows = read_results(path) + [bad]
    write_results(path, rows, TREE_COLUMNS)
    r = process(run_dir)
    assert r.returncode == 1 and _no_outputs(run_dir)
    assert "error: " in r.stderr and "row 2 (index 8): run key '0,x' is not a comma-separated label list" in r.stderr
    # Opting in to skipping: a warning naming the row, the good rows still processed.
    r = process(run_dir, "--skip_bad_rows")
    assert r.returncode == 0 and "warning: " in r.stderr and "row 2 (index 8): skipped" in r.stderr
    # A cell that is not JSON at all is fatal even then: the file itself is damaged.
    text = path.read_text(encoding="utf-8").replace('"{""0,x"": 1}"', '"{0,x: 1"')
    path.write_text(text, encoding="utf-8", newline="")
    r = process(run_dir, "--skip_bad_rows")
    assert r.returncode == 1 and "row 2: column 'res_cur' is not valid JSON" in r.stderr


def test_empty_tree_and_no_selected_pairs_warn(run_dir):
    path = run_dir / "gsm8k.None_split_0.0.None.csv"
    write_results(path, [tree_row(3, {}), tree_row(4, {(0,): 0, (1,): 0})], TREE_COLUMNS)
    r = process(run_dir)
    assert r.returncode == 0, r.stderr
    assert "row 1 (index 3): empty tree (no rollouts), no pairs" in r.stderr
    assert "no selected pairs" in r.stderr
    assert list(iter_results(run_dir / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv")) == []


def test_missing_and_empty_inputs(run_dir, tmp_path):
    r = run_cli("post_process_training_data.py", "--process_result", "--data_dir", str(tmp_path / "nope"),
                "--dataset_file_name_list", "gsm8k.None_split_0.0.{}.csv", "--data_sub_dir", "gsm8k",
                "--dataset_file_name", "gsm8k.None_split_0.0.None.csv")
    assert r.returncode != 0 and "neither gsm8k.None_split_0.0.None.csv nor shards" in r.stderr
    (run_dir / "gsm8k.None_split_0.0.None.csv").write_text("")
    r = process(run_dir)
    assert r.returncode == 1 and "empty file (no CSV header)" in r.stderr and _no_outputs(run_dir)
    r = run_cli("prepare_dataset.py", "--input", str(tmp_path / "none.csv"), "--data_dir", str(tmp_path))
    assert r.returncode == 1 and "none.csv: no such file" in r.stderr


def test_wrong_kind_of_input_is_one_line_and_leaves_no_folder(run_dir, tmp_path):
    """A non-tree result file, a tree file with no usable row, a binary file and a CSV that is
    not a pairs file: one line naming the file (and the missing columns), exit 1, and neither
    an output file nor an (empty) output folder behind."""
    path = run_dir / "gsm8k.None_split_0.0.None.csv"
    write_results(path, [{"index": 0, "input": GOAL, "target": "7", "score": 1, "history": []}])
    r = process(run_dir)
    assert r.returncode == 1 and not (run_dir / "gsm8k").exists()
    assert r.stderr == f"error: {path}: not a tree result file (one codeact_agent_tree writes): no column res_cur\n"
    bad = tree_row(0, {(0,): 1})
    bad["res_cur"] = 7
    write_results(path, [bad], TREE_COLUMNS)
    r = process(run_dir, "--skip_bad_rows")       # every row skipped: nothing to write
    assert r.returncode == 1 and r.stderr.endswith(f"error: {path}: no task rows\n")
    assert not (run_dir / "gsm8k").exists()
    data = tmp_path / "new" / "data"
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    r = run_cli("prepare_dataset.py", "--input", str(binary), "--data_dir", str(data))
    assert r.returncode == 1 and r.stderr.startswith(f"error: {binary}: unreadable CSV header")
    assert r.stderr.count("\n") == 1 and not (tmp_path / "new").exists()
    r = run_cli("prepare_dataset.py", "--input", str(path), "--data_dir", str(data))
    assert r.returncode == 1 and not (tmp_path / "new").exists()
    assert r.stderr == (f"error: {path}: not a pairs file: no column selected, positive_history, "
                        "negative_history\n")


def test_prepare_dataset_failing_late_leaves_no_folder(run_dir, tmp_path, model_path):
    assert process(run_dir).returncode == 0
    pairs = run_dir / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv"
    with pytest.raises(pairs_lib.PairsError, match="no pair fits"):
        lf_export.prepare_dataset(pairs, tmp_path / "new" / "data", "t", model_path, cutoff_len=10, log=lambda *_: None)
    assert not (tmp_path / "new").exists()


def test_shards_are_read_when_merged_file_is_absent(run_dir):
    (run_dir / "gsm8k.None_split_0.0.None.csv").rename(run_dir / "gsm8k.None_split_0.0.0.csv")
    write_results(run_dir / "gsm8k.None_split_0.0.1.csv", [tree_row(9, {(0,): 1, (1,): 0})], TREE_COLUMNS)
    r = process(run_dir)
    assert r.returncode == 0, r.stderr
    rows = [row for _, row in iter_results(run_dir / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv")]
    assert {row["data_id"] for row in rows} == {7, 9}


@pytest.mark.parametrize("node,reply,dropped", [("0,0,0", "action", 1), ("0,0,0", "none", 0),
                                               ("0,0,1", "none", 1)])
def test_pairs_with_a_reply_cut_at_max_tokens_are_dropped_unless_kept(tmp_path, node, reply, dropped):
    row = tree_row(7, RUNS)
    # One reply of pair (0,0,1) chosen / (0,0,0) rejected hit max_tokens. A rejected side is
    # dropped as a completed action, kept as verbatim rambling; a chosen side is always dropped.
    row["log_infos"]["runs"] = {node: {"steps": [{"finish_reason": "stop"}, {"finish_reason": "stop"},
                                                 {"finish_reason": "length", "reply": reply}]}}
    d = tmp_path / "eval_results" / "codeact_agent_tree.M" / "temperature_512_10_3"
    d.mkdir(parents=True)
    write_results(d / "gsm8k.None_split_0.0.None.csv", [row], TREE_COLUMNS)
    r = process(d)
    assert r.returncode == 0, r.stderr
    assert f"{dropped} dropped as cut off at max_tokens" in r.stdout
    out = d / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv"
    kept = {(tuple(p["positive_run_index"]), tuple(p["negative_run_index"])) for _, p in iter_results(out)}
    assert (((0, 0, 1), (0, 0, 0)) in kept) == (not dropped) and ((0, 1), (0, 0)) in kept
    assert len(kept) == 5 - dropped
    r = process(d, "--keep_truncated")
    assert r.returncode == 0 and "0 dropped as cut off" in r.stdout
    assert len(list(iter_results(out))) == 5


def test_pairs_over_a_sandbox_failure_are_dropped(tmp_path):
    row = tree_row(7, RUNS)
    # Run (1,1,0) could not be replayed: its last step's outcome is the sandbox's, not the action's.
    # Every node it passes through, (1,) and (1,1), loses its pairs; (1,1)'s one pair was already
    # dropped as identical, so (2,) vs (1,) and (0,) vs (1,) go.
    row["log_infos"]["runs"] = {"1,1,0": {"steps": [{"crashed": False}, {"crashed": False},
                                                    {"crashed": True, "sandbox_error": True}]}}
    d = tmp_path / "eval_results" / "codeact_agent_tree.M" / "temperature_512_10_3"
    d.mkdir(parents=True)
    write_results(d / "gsm8k.None_split_0.0.None.csv", [row], TREE_COLUMNS)
    r = process(d)
    assert r.returncode == 0, r.stderr
    assert "2 over a sandbox failure" in r.stdout
    out = d / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv"
    kept = {(tuple(p["positive_run_index"]), tuple(p["negative_run_index"])) for _, p in iter_results(out)}
    assert kept == {((2,), (0,)), ((0, 1), (0, 0)), ((0, 0, 1), (0, 0, 0))}


def test_pair_prompt_with_the_examples_the_rollouts_saw(run_dir):
    path = run_dir / "gsm8k.None_split_0.0.None.csv"
    rows = read_results(path)
    out = run_dir / "gsm8k" / "gsm8k.None_split_0.0.None.pairs.csv"
    # Trees that do not record their example set cannot give that prompt: one line, nothing written.
    r = process(run_dir, "--pair_examples", "sampled")
    assert r.returncode == 1 and "records no example set" in r.stderr and _no_outputs(run_dir)
    for row in rows:
        row["log_infos"]["examples"] = {"set": "gsm8k", "n": 2}
    # The next row has the same goal but saw one example: its prompt is not the cached one.
    one = {**rows[0], "index": 8, "log_infos": {**rows[0]["log_infos"], "examples": {"set": "gsm8k", "n": 1}}}
    write_results(path, rows + [one], TREE_COLUMNS)
    r = process(run_dir, "--pair_examples", "sampled")
    assert r.returncode == 0, r.stderr
    for index, n in ((7, 2), (8, 1)):
        seen = build_messages("gsm8k", GOAL, n_icl=n, tools_doc=None, env_state=None)
        assert len(seen) > len(prompt())  # the examples are there
        pairs = [p for _, p in iter_results(out) if p["data_id"] == index]
        assert pairs and all(p["positive_history"][:len(seen)] == seen for p in pairs)
        assert all(p["negative_history"][:len(seen)] == seen for p in pairs)
        assert all(p["positive_history"][len(seen)]["role"] == "assistant" for p in pairs)
