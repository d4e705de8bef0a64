"""pipeline/launch.py without a server: the run configuration the script hands over, the plan
callers read (result directory, each agent's tasks), the Ray worker's server spec, and the
shell quoting that keeps the printed command lines what the shell version printed."""
import os
import random
import string
import subprocess

import pytest

from conftest import ROOT
from densepolicy import engines
from pipeline import launch

ENV = {**os.environ, "NUM_GPUS": "0", "TASK_LIMIT": "7", "AGENT_ARGS": "--max_turn 3"}


def test_bash_quote_is_printf_q():
    rng = random.Random(0)
    alphabet = string.ascii_letters[:6] + string.digits[:3] + string.punctuation + " "
    words = ["", "~", "#x", "a=~b", "a:~b", "x~", "/tmp/my model", *(
        "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 8))) for _ in range(300))]
    out = subprocess.run(["bash", "-c", 'for w in "$@"; do printf "%q\\n" "$w"; done', "-", *words],
                         capture_output=True, text=True, check=True).stdout
    assert [launch.bash_quote(w) for w in words] == out.splitlines()


def test_configure_takes_the_scripts_settings_and_round_trips():
    config = launch.configure(["SmolLM2-135M-Instruct", "math500", "codeact_agent_tree", "2", "3"], ENV)
    assert config.default_args.startswith("--n_icl 1 --max_turn 10 --base 10 --window_size 8 ")
    assert (config.num_gpus, config.task_limit, config.agent_args) == (0, 7, "--max_turn 3")
    assert config.script == str(ROOT / "distributed_test.sh")
    assert launch.Config.from_json(config.to_json()) == config
    with pytest.raises(launch.LaunchError, match="PROCESSES_PER_GPU must be a positive integer"):
        launch.configure(["M", "gsm8k", "codeact_agent", "0", "3"], ENV)


def test_the_scripts_settings_follow_the_registered_defaults(tmp_path):
    """The agent flags: the family's defaults (dataset.agent_defaults), then the script's own
    per-dataset settings (which win), then AGENT_ARGS."""
    import sys
    import dataset
    script = tmp_path / "distributed_test.sh"
    script.write_text((ROOT / "distributed_test.sh").read_text().replace(
        '[math]=""', '[math]="--max_steps 5 --n_icl 0"', 1))
    env = {**ENV, "PYTHON": sys.executable}
    config = launch.configure(["M", "math_level2", "codeact_agent", "1", "0"], env, script=script)
    assert config.default_args == " ".join(dataset.agent_defaults("math", "codeact_agent")) + " --max_steps 5 --n_icl 0"
    args = launch.plan(config).agents[0].args()
    assert (args.max_steps, args.n_icl, args.max_turn) == (5, 0, 3)
    tree = launch.configure(["M", "math_level2", "codeact_agent_tree", "1", "0"], env, script=script)
    assert tree.default_args == " ".join(dataset.agent_defaults("math", "codeact_agent_tree"))


def test_plan_shards_partition_the_tasks_and_share_one_result_dir():
    config = launch.configure(["SmolLM2-135M-Instruct", "gsm8k", "codeact_agent", "3", "0"],
                              {**ENV, "NUM_GPUS": "2", "PORT_BASE": "9300"})
    run_plan = launch.plan(config)
    assert [s.session for s in run_plan.servers] == ["dp_server_9300", "dp_server_9301"]
    assert [a.session for a in run_plan.agents] == [f"dp_{i}" for i in range(6)]
    shards = [a.task_indices() for a in run_plan.agents]
    assert sum(shards, []) == run_plan.task_indices() == list(range(7))  # contiguous, each once
    assert run_plan.max_turn == 3  # AGENT_ARGS after the per-dataset settings: the user's wins
    assert {a.result_dir() for a in run_plan.agents} == {run_plan.result_dir()}
    assert run_plan.result_dir().name == "greedy_3_30"


def test_ray_plan_one_driver_every_task_and_the_workers_server_line():
    config = launch.configure(["SmolLM2-135M-Instruct", "gsm8k", "codeact_agent", "2", "4"],
                              {**ENV, "LAUNCHER": "ray", "RAY_WORKERS": "3"})
    run_plan = launch.plan(config)
    [driver] = run_plan.agents
    assert driver.shard_id is None and driver.task_indices() == list(range(7))
    assert " --workers 3 --gpus_per_worker 0 " in driver.command
    spec = engines.ServerSpec(config.engine, config.model, config.model, 0, config.run_logs)
    assert f" --server_spec {launch.bash_quote(spec.to_json())} " in driver.command
    assert engines.ServerSpec.from_json(spec.to_json()) == spec
    assert run_plan.ray_server == spec.command("{gpu}", "{port}")
    for bad in ("[1]", '{"engine": "sglang", "model_path": "m", "model": "m", "num_gpus": 0}', '{"x": 1}'):
        with pytest.raises(ValueError):
            engines.ServerSpec.from_json(bad)


def test_serve_plans_servers_only():
    config = launch.configure(["serve", "M", "5"], {**ENV, "LAUNCHER": "ray"})
    run_plan = launch.plan(config)
    assert config.serve_only and config.launcher == "tmux"
    assert len(run_plan.servers) == 1 and not run_plan.agents
    with pytest.raises(launch.LaunchError, match="starts no agent"):
        run_plan.result_dir()


def test_stop_without_a_run_is_refused(tmp_path):
    with pytest.raises(launch.LaunchError, match="no run with TMUX_START_ID 7"):
        launch.stop(str(tmp_path), "7")
    manifest = tmp_path / "run_8" / "sessions.txt"
    manifest.parent.mkdir()
    manifest.write_text("dp_no_such_session_8\n")
    said = []
    launch.stop(str(tmp_path), "8", report=said.append)
    assert said == [] and not manifest.exists()
