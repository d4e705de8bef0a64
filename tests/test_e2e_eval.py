"""End to end: the real embedded model behind a real server, through distributed_test.sh, then
the merge. The plain CodeAct agent on two GSM8K test tasks with two agent processes."""
from conftest import merge_and_score, replay_history, run_launcher
from densepolicy.results import read_results

COLUMNS = {"index", "input", "target", "score", "steps", "turns", "history", "log_infos"}


def test_gsm8k_eval_through_the_launcher_and_merge(tmp_path, shared_server):
    out_root = tmp_path / "eval_results"
    run = run_launcher(tmp_path, "SmolLM2-135M-Instruct", "gsm8k", "codeact_agent", 2, {
        "TASK_LIMIT": "2",
        "AGENT_ARGS": f"--output_root {out_root} --n_icl 2 --max_steps 2 --max_turn 2 --max_tokens 160"})
    assert run.returncode == 0, run.stdout + run.stderr
    run_dir = out_root / "codeact_agent.SmolLM2-135M-Instruct" / "greedy_2_2"
    shards = sorted(p.name for p in run_dir.iterdir())
    assert shards == ["gsm8k.None_split_0.0.0.csv", "gsm8k.None_split_0.0.1.csv"]
    rows = []
    for shard, name in enumerate(shards):
        [row] = read_results(run_dir / name)  # contiguous blocks of ceil(2/2) = 1 task
        assert row["index"] == shard and COLUMNS <= set(row)
        rows.append(row)
    for row in rows:
        assert row["score"] in (0.0, 1.0) and 1 <= row["steps"] <= 2
        assert row["target"] and row["input"]
        assert row["log_infos"]["end_reason"] in {"solved", "max_turn", "max_steps", "context_exhausted"}
        replies = [m["content"] for m in row["history"] if m["role"] == "assistant"]
        assert len(replies) == row["steps"] and all(r.strip() for r in replies)
        # Stored trimmed: Llama-3's template trims each message when serving, training does not.
        assert all(m["content"] == m["content"].strip() for m in row["history"])
        # Every observation that followed code is what that code really printed.
        replay_history(row["history"])

    merge = merge_and_score(run_dir, "gsm8k")
    assert merge.returncode == 0, merge.stderr
    assert "merged 2 shard file(s)" in merge.stdout and "2 unique tasks" in merge.stdout
    assert "Max Trial 10" in merge.stdout
    merged = read_results(run_dir / "gsm8k.None_split_0.0.None.csv")
    assert [r["index"] for r in merged] == [0, 1]
    assert sorted(p.name for p in (run_dir / "distributed_result").iterdir()) == shards
