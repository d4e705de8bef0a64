"""Shared fixtures: the real embedded model behind a real model server (vLLM on the CPU, as the
launcher serves it), started once per test session through the launcher itself."""
import os
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from densepolicy.paths import ROOT
MODEL = "SmolLM2-135M-Instruct"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"{url} not healthy after {timeout}s")


@pytest.fixture(scope="session")
def model_path() -> str:
    from densepolicy.models import resolve_model
    return resolve_model(MODEL)


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory) -> dict:
    """The launcher's environment (PORT_BASE, TMUX_TMPDIR, LOG_DIR) of one supervised server of the
    embedded model, started with `./distributed_test.sh serve`: a launcher run given this
    environment reuses the server instead of starting its own (start-up costs tens of seconds).
    Tests that kill or restart a server start their own."""
    home = tmp_path_factory.mktemp("shared_server")
    env = {"NUM_GPUS": "0", "PORT_BASE": str(free_port()), "TMUX_TMPDIR": str(home),
           "LOG_DIR": str(home / "logs")}
    start_id = str(random.randrange(90000, 99999))
    run = subprocess.run(["bash", str(ROOT / "distributed_test.sh"), "serve", MODEL, start_id],
                         capture_output=True, text=True, cwd=ROOT, env={**os.environ, **env}, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    try:
        yield env
    finally:
        subprocess.run(["bash", str(ROOT / "distributed_test.sh"), "stop", start_id], capture_output=True,
                       cwd=ROOT, env={**os.environ, **env}, timeout=60)


@pytest.fixture(scope="session")
def model_server(shared_server):
    """(base_url, served model name) of the shared server."""
    return f"http://127.0.0.1:{shared_server['PORT_BASE']}/v1", MODEL


def replay_history(history: list[dict], setup=None, setup_kwargs=None) -> int:
    """Re-run every action of an episode's history in a fresh sandbox and check that each
    observation in the history is exactly what the code printed. Returns the number of actions."""
    import asyncio
    from agents.codeact import observation_of, parse_reply
    from densepolicy.sandbox import SandboxPool

    async def go():
        actions = 0
        async with SandboxPool() as pool:
            snapshot, _ = await pool.new_episode(setup, setup_kwargs)
            for i, message in enumerate(history):
                if message["role"] != "assistant":
                    continue
                parsed = parse_reply(message["content"])
                if parsed.kind != "action":
                    continue
                actions += 1
                snapshot, result = await pool.run(snapshot, parsed.code)
                if i + 1 < len(history):
                    expected = observation_of(result.output)
                    assert history[i + 1]["content"].startswith(expected), (parsed.code, expected)
        return actions

    return asyncio.run(go())


def launcher_call(tmp_path, model, dataset, agent, procs, env: dict) -> tuple[list[str], dict]:
    """(argv, environment) of ./distributed_test.sh with WAIT=1 on a free port, its own tmux
    socket and log dir (a `shared_server` in `env` overrides these three)."""
    env = {**os.environ, "WAIT": "1", "NUM_GPUS": "0", "PORT_BASE": str(free_port()),
           "TMUX_TMPDIR": str(tmp_path), "LOG_DIR": str(tmp_path / "logs"), **env}
    start_id = str(random.randrange(1000, 90000))
    return ["bash", str(ROOT / "distributed_test.sh"), model, dataset, agent, str(procs), start_id], env


def run_launcher(tmp_path, model, dataset, agent, procs, env: dict, timeout=1500):
    argv, env = launcher_call(tmp_path, model, dataset, agent, procs, env)
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


def merge_and_score(run_dir, dataset):
    """post_process_test_result.py --merge_distributed_result --see_score on a run directory."""
    return subprocess.run([sys.executable, "post_process_test_result.py", "--merge_distributed_result",
                           "--see_score", "--data_dir", str(run_dir),
                           "--dataset_file_name_list", f"{dataset}.None_split_0.0.{{}}.csv"],
                          capture_output=True, text=True, cwd=ROOT)


def kill_server_after_first_row(proc: subprocess.Popen, run_dir: Path, pid_file: Path,
                                timeout: float = 900) -> tuple[int, int]:
    """While the launcher `proc` runs, wait for its first finished row under `run_dir`, then
    SIGKILL the model server itself (the pid in `pid_file`, not its supervisor). Returns
    (killed pid, rows finished before the kill)."""
    import signal
    from densepolicy.results import read_results
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before the server could be killed"
        rows = sum(len(read_results(p)) for p in run_dir.glob("*.csv")) if run_dir.exists() else 0
        if rows and pid_file.exists():
            pid = int(pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            assert "--port" in cmdline and ("vllm" in cmdline or " serve " in cmdline), cmdline
            os.kill(pid, signal.SIGKILL)
            return pid, rows
        time.sleep(0.2)
    raise TimeoutError(f"no finished row under {run_dir} after {timeout}s")


def wait_gone(pid: int, timeout: float = 60) -> bool:
    """True once process `pid` has ended (a stopped server is reaped by its supervisor)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":  # ended, not yet reaped
            return True
        time.sleep(0.5)
    return False
