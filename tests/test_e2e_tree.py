"""End to end: the tree sampler with the real embedded model behind a real server, through
distributed_test.sh; and a real run killed with SIGKILL, then resumed by the same command."""
import os
import signal
import subprocess
import sys
import time
from itertools import combinations

from conftest import ROOT, replay_history, run_launcher
from densepolicy.results import read_results
from densepolicy.tree import label_temperature, parse_run_key

TREE_COLUMNS = {"index", "input", "target", "score", "res", "res_cur", "full_index", "steps",
                "history", "policies", "log_infos"}


def test_gsm8k_trees_through_the_launcher(tmp_path, shared_server):
    out_root = tmp_path / "eval_results"
    run = run_launcher(tmp_path, "SmolLM2-135M-Instruct", "gsm8k", "codeact_agent_tree", 2, {
        "TASK_LIMIT": "2",
        "AGENT_ARGS": f"--base 3 --max_steps 3 --window_size 2 --max_sample_number 4 "
                      f"--max_rollouts 8 --n_icl 2 --max_tokens 120 --output_root {out_root}"})
    assert run.returncode == 0, run.stdout + run.stderr
    # The directory name follows the knobs actually used: M=4, B=3, D=3.
    run_dir = out_root / "codeact_agent_tree.SmolLM2-135M-Instruct" / "temperature_4_3_3"
    rows = [r for shard in (0, 1) for r in read_results(run_dir / f"gsm8k.None_split_0.0.{shard}.csv")]
    assert sorted(r["index"] for r in rows) == [0, 1]  # trees sample the train split
    for row in rows:
        assert TREE_COLUMNS <= set(row)
        keys = list(row["res_cur"])
        assert keys and set(keys) == set(row["full_index"]) == set(row["history"]) == set(row["policies"])
        # Round 0: every first-step label, then greedy.
        assert {parse_run_key(k)[0] for k in keys} == {0, 1, 2}
        for key in keys:
            run_index, full = parse_run_key(key), tuple(row["full_index"][key])
            assert len(full) == 3 and full[:len(run_index)] == run_index
            assert row["policies"][key] == [label_temperature(l) for l in run_index]
            assert row["steps"][key] == len(run_index)
        assert row["score"] == float(any(row["res_cur"].values()))
        # Rollouts sharing a prefix share its actions and observations: that is the tree.
        for a, b in combinations(keys, 2):
            la, lb = parse_run_key(a), parse_run_key(b)
            shared = next((i for i in range(min(len(la), len(lb))) if la[i] != lb[i]),
                          min(len(la), len(lb)))
            shared = min(shared, len(la) - 1, len(lb) - 1)  # a finished last step has no observation
            assert row["history"][a][:2 * shared] == row["history"][b][:2 * shared]
        for key in keys:
            replay_history(row["history"][key])


def _run_tree(model_server, out_root, task_limit):
    base_url, served = model_server
    return subprocess.Popen(
        [sys.executable, "-m", "agents.codeact_agent_tree", "--model", "SmolLM2-135M-Instruct",
         "--served_model", served, "--base_url", base_url, "--dataset", "gsm8k",
         "--task_limit", str(task_limit), "--concurrency", "1", "--base", "2", "--max_steps", "2",
         "--window_size", "1", "--max_sample_number", "1", "--max_rollouts", "3", "--n_icl", "0",
         "--max_tokens", "60", "--output_root", str(out_root)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_sigkill_mid_run_then_rerun_loses_and_duplicates_nothing(tmp_path, model_server):
    out_root = tmp_path / "eval_results"
    shard = out_root / "codeact_agent_tree.SmolLM2-135M-Instruct" / "temperature_1_2_2" / \
        "gsm8k.None_split_0.0.0.csv"
    proc = _run_tree(model_server, out_root, 3)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline and proc.poll() is None:
        if shard.exists() and len(read_results(shard)) >= 1:
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the run finished before it could be killed: " + proc.stdout.read()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = read_results(shard)
    assert 1 <= len(first) < 3
    # A torn write, as a kill in the middle of appending a row would leave.
    with open(shard, "ab") as f:
        f.write(b'"2","Natalia sold clips')
    proc = _run_tree(model_server, out_root, 3)
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
    assert f"{3 - len(first)} tasks to run ({len(first)} already done)" in output
    rows = read_results(shard)
    assert sorted(r["index"] for r in rows) == [0, 1, 2]
    assert rows[:len(first)] == first
