"""LAUNCHER=ray: a real local Ray cluster on the CPU, workers each owning a real server of the
embedded model, through distributed_test.sh: every task exactly once, the usual merge and resume,
a server killed mid-run, a server that cannot come back, and the stop command."""
import random
import subprocess
import time

from conftest import (ROOT, kill_server_after_first_row, launcher_call, merge_and_score,
                      run_launcher, wait_gone)
from densepolicy.results import read_results
from densepolicy.supervisor import port_free

MODEL = "SmolLM2-135M-Instruct"
# Tiny budgets: the point is the distribution, not the answers. One task at a time per worker,
# so that tasks really are handed out one by one.
FLAGS = "--n_icl 0 --max_steps 1 --max_turn 1 --max_tokens 16 --concurrency 1"


def port_base(n: int) -> int:
    """n free consecutive ports below the kernel's ephemeral range and above Ray's worker ports
    (10002-19999): Ray binds random ports of its own there, and a server must not race it."""
    while True:
        base = random.randrange(20000, 32000 - n)
        if all(port_free(base + i) for i in range(n)):
            return base


def ray_env(tmp_path, tasks, workers, **extra):
    return {"LAUNCHER": "ray", "RAY_WORKERS": str(workers), "TASK_LIMIT": str(tasks),
            "PORT_BASE": str(port_base(workers)),
            "AGENT_ARGS": f"--output_root {tmp_path / 'eval_results'} {FLAGS}", **extra}


def run_dir(tmp_path):
    return tmp_path / "eval_results" / f"codeact_agent.{MODEL}" / "greedy_1_1"


def indices(directory):
    return sorted(r["index"] for p in directory.rglob("*.csv") for r in read_results(p))


def read(path):
    return path.read_text() if path.exists() else ""


def start(tmp_path, env):
    argv, env = launcher_call(tmp_path, MODEL, "gsm8k", "codeact_agent", 1, env)
    out = open(tmp_path / "launcher.out", "w")
    return subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT), argv[-1]


def test_two_workers_run_every_task_once_then_merge_and_resume(tmp_path):
    env = ray_env(tmp_path, 4, 2)
    run = run_launcher(tmp_path, MODEL, "gsm8k", "codeact_agent", 1, env)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run_dir(tmp_path)
    # Shards are named by worker; with one slot each, both workers got tasks from the start.
    assert sorted(p.name for p in out.iterdir()) == ["gsm8k.None_split_0.0.0.csv", "gsm8k.None_split_0.0.1.csv"]
    assert indices(out) == [0, 1, 2, 3]  # none lost, none twice
    assert "4 task(s) finished (worker 0: " in run.stdout
    for row in (r for p in out.iterdir() for r in read_results(p)):
        assert row["score"] in (0.0, 1.0) and row["steps"] == 1 and row["history"]

    merge = merge_and_score(out, "gsm8k")
    assert merge.returncode == 0, merge.stderr
    assert "merged 2 shard file(s)" in merge.stdout and "4 unique tasks" in merge.stdout
    assert [r["index"] for r in read_results(out / "gsm8k.None_split_0.0.None.csv")] == [0, 1, 2, 3]

    again = run_launcher(tmp_path, MODEL, "gsm8k", "codeact_agent", 1, env)  # resume: nothing left
    assert again.returncode == 0, again.stdout + again.stderr
    assert "0 tasks to run (4 already done)" in again.stdout
    assert not list(out.glob("gsm8k.None_split_0.0.[0-9]*.csv"))  # no new shard: nothing ran again


def test_server_killed_mid_run_every_task_still_finishes(tmp_path):
    proc, start_id = start(tmp_path, ray_env(tmp_path, 6, 2))
    logs = tmp_path / "logs" / f"run_{start_id}"
    try:
        killed, finished = kill_server_after_first_row(proc, run_dir(tmp_path), logs / "server_0.pid")
        assert proc.wait(900) == 0, (tmp_path / "launcher.out").read_text()
    finally:
        proc.kill()
    assert finished < 6
    log = (logs / "server_0.log").read_text()
    assert f"server pid {killed} exited with code -9; restart 1/3" in log and "is back" in log
    assert indices(run_dir(tmp_path)) == [0, 1, 2, 3, 4, 5]
    assert wait_gone(int((logs / "server_0.pid").read_text()))  # the run's end takes its servers down


def test_a_server_that_cannot_come_back_stops_the_run_and_keeps_finished_tasks(tmp_path):
    proc, start_id = start(tmp_path, ray_env(tmp_path, 4, 1, SERVER_MAX_RESTARTS="0"))
    logs = tmp_path / "logs" / f"run_{start_id}"
    try:
        _, finished = kill_server_after_first_row(proc, run_dir(tmp_path), logs / "server_0.pid")
        code = proc.wait(600)
    finally:
        proc.kill()
    text = (tmp_path / "launcher.out").read_text()
    assert code == 1, text
    assert "gave up after 0 restart(s)" in text
    assert "error: every worker lost its model server" in text and "the same command again does the rest" in text
    done = indices(run_dir(tmp_path))
    assert finished <= len(done) < 4 and len(set(done)) == len(done)


def test_stop_ends_the_driver_its_workers_and_their_servers(tmp_path):
    argv, env = launcher_call(tmp_path, MODEL, "gsm8k", "codeact_agent", 1, ray_env(tmp_path, 50, 1, WAIT="0"))
    started = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout + started.stderr
    start_id = argv[-1]
    assert f"tmux attach -t dp_{start_id}" in started.stdout and f"stop {start_id}" in started.stdout
    logs = tmp_path / "logs" / f"run_{start_id}"
    deadline = time.monotonic() + 600
    while "\nworker 0: node" not in read(logs / "driver.log"):  # server up, tasks handed out
        assert time.monotonic() < deadline and f"dp_{start_id}" in read(logs / "sessions.txt"), \
            read(logs / "driver.log")
        time.sleep(0.5)
    server = int((logs / "server_0.pid").read_text())
    stop = subprocess.run(["bash", str(ROOT / "distributed_test.sh"), "stop", start_id], env=env,
                          capture_output=True, text=True, timeout=60)
    assert stop.returncode == 0 and f"stopped dp_{start_id}" in stop.stdout
    assert wait_gone(server)
    assert not (logs / "sessions.txt").exists()
