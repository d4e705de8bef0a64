"""End to end on the tool environments: the real embedded model behind a real server drives
real ALFWorld (TextWorld) and BabyAI (minigrid) episodes through distributed_test.sh."""
from conftest import merge_and_score, replay_history, run_launcher
from densepolicy.results import read_results
from densepolicy.tree import parse_run_key


def _rows(run_dir, dataset):
    return [r for shard in (0, 1) for r in read_results(run_dir / f"{dataset}.None_split_0.0.{shard}.csv")]


def test_alfworld_put_eval_and_per_type_scores(tmp_path, shared_server):
    out_root = tmp_path / "eval_results"
    run = run_launcher(tmp_path, "SmolLM2-135M-Instruct", "alfworld_put", "codeact_agent", 2, {
        **shared_server,
        "TASK_LIMIT": "2", "AGENT_ARGS": f"--output_root {out_root} --max_steps 2 --max_tokens 120"})
    assert run.returncode == 0, run.stdout + run.stderr
    run_dir = out_root / "codeact_agent.SmolLM2-135M-Instruct" / "greedy_10_2"
    rows = _rows(run_dir, "alfworld_put")
    assert sorted(r["index"] for r in rows) == [0, 1]
    for row in rows:
        assert row["task_type"] == "put" and row["task_file"].endswith("game.tw-pddl")
        assert "valid_unseen" in row["task_file"]  # evaluation uses the unseen split
        assert row["log_infos"]["env_state"].startswith("You are in the middle of a room")
        assert row["steps"] == 2 or row["log_infos"]["end_reason"] in ("solved", "env_done")
        replay_history(row["history"], "dataset.alfworld:make_env", {"task": {
            k: row[k] for k in ("index", "input", "target", "task_file", "task_type")}})
    score = merge_and_score(run_dir, "alfworld_put")
    assert score.returncode == 0, score.stderr
    assert "put:" in score.stdout and "mean:" in score.stdout


def test_babyai_trees(tmp_path, shared_server):
    out_root = tmp_path / "eval_results"
    run = run_launcher(tmp_path, "SmolLM2-135M-Instruct", "babyai", "codeact_agent_tree", 2, {
        **shared_server,
        "TASK_LIMIT": "2",
        "AGENT_ARGS": f"--output_root {out_root} --base 2 --max_steps 2 --window_size 1 "
                      "--max_sample_number 1 --max_rollouts 3 --max_tokens 80"})
    assert run.returncode == 0, run.stdout + run.stderr
    rows = _rows(out_root / "codeact_agent_tree.SmolLM2-135M-Instruct" / "temperature_1_2_2", "babyai")
    assert sorted(r["index"] for r in rows) == [0, 1]
    for row in rows:
        assert row["level"] and row["seed"] >= 100000  # trees use the train seed range
        assert {parse_run_key(k)[0] for k in row["res_cur"]} == {0, 1}
        task = {k: row[k] for k in ("index", "input", "target", "level", "seed")}
        for history in row["history"].values():
            replay_history(history, "dataset.babyai:make_env", {"task": task})
