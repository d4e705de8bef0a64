"""distributed_test.sh: the exact command lines it starts (the GPU ones cannot run here), bad
input, and a real vLLM CPU server killed mid-run."""
import os
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, kill_server_after_first_row, launcher_call, wait_gone
from densepolicy import engines
from densepolicy.results import read_results


def launch(*args, **env):
    return subprocess.run(["bash", str(ROOT / "distributed_test.sh"), *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **env}, timeout=60)


def test_vllm_command_lines_one_server_per_gpu():
    out = launch("Meta-Llama-3-8B-Instruct", "math", "codeact_agent", "3", "7", DRY_RUN="1",
                 NUM_GPUS="2", PORT_BASE="9100", TASK_LIMIT="50", AGENT_ARGS="--max_steps 4")
    assert out.returncode == 0, out.stderr
    servers = [l for l in out.stdout.splitlines() if l.startswith("[server")]
    assert servers == [
        f"[server dp_server_{9100 + g}] CUDA_VISIBLE_DEVICES={g} vllm serve Meta-Llama-3-8B-Instruct "
        f"--served-model-name Meta-Llama-3-8B-Instruct --host 127.0.0.1 --port {9100 + g} "
        "--enable-prefix-caching --gpu-memory-utilization 0.9" for g in range(2)]
    agents = [l for l in out.stdout.splitlines() if l.startswith("[agent")]
    assert len(agents) == 6
    for shard, line in enumerate(agents):
        gpu = shard // 3
        assert line.startswith(f"[agent dp_{7 + shard}] ")
        assert f"--base_url http://127.0.0.1:{9100 + gpu}/v1 " in line
        assert f"--num_shards 6 --shard_id {shard} --task_limit 50 " in line
        assert "--served_model Meta-Llama-3-8B-Instruct" in line
        # Per-dataset defaults first, then AGENT_ARGS, so the user's flags win.
        assert re.search(r"--n_icl 1 --max_turn 10 --max_steps 30 +--max_steps 4$", line)


def test_cpu_default_is_one_vllm_cpu_server():
    out = launch("SmolLM2-135M-Instruct", "gsm8k", "codeact_agent_tree", "2", "0", DRY_RUN="1",
                 NUM_GPUS="0")
    assert out.returncode == 0, out.stderr
    [server] = [l for l in out.stdout.splitlines() if l.startswith("[server")]
    assert server.startswith("[server dp_server_8000] VLLM_CPU_NUM_OF_RESERVED_CPU=0 ")
    assert (f"{ROOT}/.venv-vllm/bin/python -m vllm.entrypoints.openai.api_server --model SmolLM2-135M-Instruct "
            "--served-model-name SmolLM2-135M-Instruct --host 127.0.0.1 --port 8000 --enable-prefix-caching "
            f"--max-model-len 8192 --kv-cache-memory-bytes 2G --dtype {engines.native_cpu_dtype()} "
            "--enforce-eager") in server
    agents = [l for l in out.stdout.splitlines() if l.startswith("[agent")]
    assert len(agents) == 2 and all("--base_url http://127.0.0.1:8000/v1" in a for a in agents)
    assert all("--served_model SmolLM2-135M-Instruct " in a for a in agents)
    assert all("--base 10 --window_size 16 --max_steps 32 --max_sample_number 256" in a for a in agents)


def test_cpu_dtype_follows_the_cpu_unless_set():
    """bfloat16 only where the CPU computes it natively (emulated, it decoded 2.6x slower)."""
    emulated = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
    assert engines.native_cpu_dtype(emulated) == "float32"
    assert engines.native_cpu_dtype(emulated.replace("avx512bw", "avx512bw avx512_bf16")) == "bfloat16"
    assert engines.native_cpu_dtype(emulated.replace("avx2", "avx2 amx_bf16 amx_tile")) == "bfloat16"
    assert engines.native_cpu_dtype("") == "float32"
    for dtype in ("float32", "bfloat16"):
        out = launch("SmolLM2-135M-Instruct", "gsm8k", "codeact_agent", "1", "0", DRY_RUN="1", NUM_GPUS="0",
                     VLLM_CPU_DTYPE=dtype)
        assert out.returncode == 0, out.stderr
        assert f" --dtype {dtype} " in out.stdout


@pytest.mark.parametrize("args, env, message", [
    (("M", "imagenet", "codeact_agent", "1", "0"), {}, "unknown dataset 'imagenet'"),
    (("M", "gsm8k", "react_agent", "1", "0"), {}, "unknown agent 'react_agent'"),
    (("M", "gsm8k", "codeact_agent", "two", "0"), {}, "PROCESSES_PER_GPU must be a positive integer"),
    (("M", "gsm8k", "codeact_agent", "1"), {}, "usage:"),
    (("M", "gsm8k", "codeact_agent", "1", "0"), {"NUM_GPUS": "0", "ENGINE": "vllm",
                                                 "VLLM_CPU_VENV": "/nonexistent"}, "the CPU engine is not installed"),
    (("M", "gsm8k", "codeact_agent", "1", "0"), {"ENGINE": "tgi"}, "ENGINE must be vllm or transformers"),
    (("serve", "M"), {}, "usage:"),
    (("stop", "424242"), {}, "no run with TMUX_START_ID 424242"),
])
def test_bad_input_is_one_line_and_nonzero(args, env, message):
    out = launch(*args, **env)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and message in out.stderr


def test_ray_command_lines_take_the_same_server_line_and_agent_flags():
    out = launch("Meta-Llama-3-8B-Instruct", "math", "codeact_agent", "3", "7", DRY_RUN="1", LAUNCHER="ray",
                 NUM_GPUS="2", PORT_BASE="9100", TASK_LIMIT="50", AGENT_ARGS="--max_steps 4")
    assert out.returncode == 0, out.stderr
    [server] = [l for l in out.stdout.splitlines() if l.startswith("[server")]
    # The tmux launcher's vLLM line, with each worker's GPU and port filled in by the worker.
    assert server == ("[server ray worker] CUDA_VISIBLE_DEVICES={gpu} vllm serve Meta-Llama-3-8B-Instruct "
                      "--served-model-name Meta-Llama-3-8B-Instruct --host 127.0.0.1 --port {port} "
                      "--enable-prefix-caching --gpu-memory-utilization 0.9")
    [driver] = [l for l in out.stdout.splitlines() if l.startswith("[driver")]
    assert driver.startswith("[driver dp_7] ") and "-m pipeline.ray_backend --agent codeact_agent " in driver
    assert "--workers 2 --gpus_per_worker 1 " in driver and "--slots 3 --port_base 9100 " in driver
    assert re.search(r" -- --model Meta-Llama-3-8B-Instruct --served_model Meta-Llama-3-8B-Instruct "
                     r"--dataset math --task_limit 50 --n_icl 1 --max_turn 10 --max_steps 30 +--max_steps 4$", driver)


def test_transformers_fallback_command_line():
    out = launch("SmolLM2-135M-Instruct", "gsm8k", "codeact_agent", "1", "0", DRY_RUN="1", NUM_GPUS="0",
                 ENGINE="transformers")
    assert out.returncode == 0, out.stderr
    [server] = [l for l in out.stdout.splitlines() if l.startswith("[server")]
    assert "serve --no-continuous-batching --device cpu --host 127.0.0.1 --port 8000 SmolLM2-135M-Instruct" in server
    # transformers serve answers to the path it loaded, so that is the name the agents ask for.
    assert all("--served_model SmolLM2-135M-Instruct " in l for l in out.stdout.splitlines() if l.startswith("[agent"))


def test_unknown_model_fails_at_once_before_any_server(tmp_path):
    """Neither the embedded model, nor a directory, nor in the (empty) hub cache, and offline:
    one line naming the model and where it was looked for, before the run directory exists."""
    t = time.monotonic()
    out = launch("NoSuchModel", "gsm8k", "codeact_agent", "1", "0", NUM_GPUS="0", ENGINE="transformers",
                 HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), LOG_DIR=str(tmp_path / "logs"))
    assert time.monotonic() - t < 15
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith("error: model 'NoSuchModel': not the embedded model")
    assert "not a model directory" in out.stderr and str(tmp_path / "hub") in out.stderr
    assert not (tmp_path / "logs").exists()      # no run directory, so no server was started


def test_model_names_resolve_to_what_a_server_can_load(tmp_path):
    def resolve(name):
        return subprocess.run([sys.executable, "-m", "densepolicy.models", name], capture_output=True,
                              text=True, cwd=ROOT, timeout=60,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")})
    # A hub id in the local cache: its snapshot directory, so the server needs no network.
    snap = tmp_path / "hub" / "models--org--tiny" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (tmp_path / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--tiny" / "refs" / "main").write_text("a" * 40)
    out = resolve("org/tiny")
    assert out.returncode == 0 and out.stdout.strip() == str(snap), out.stderr
    assert resolve(str(snap)).stdout.strip() == str(snap)          # a model directory as given
    for name, message in [(str(tmp_path), "not a model directory (no config.json)"),
                          (str(tmp_path / "nope"), "no such model directory"),
                          ("org/absent", "HF_HUB_OFFLINE is set")]:
        out = resolve(name)
        assert out.returncode != 0 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("error: ") and name in out.stderr and message in out.stderr


def test_bad_launcher_is_refused():
    out = launch("M", "gsm8k", "codeact_agent", "1", "0", LAUNCHER="slurm")
    assert out.returncode == 2 and "LAUNCHER must be tmux or ray" in out.stderr


def test_server_killed_mid_run_is_restarted_and_every_task_finishes(tmp_path):
    """The real model server is SIGKILLed after the first finished task: its supervisor starts it
    again, the agent's requests wait and are sent again, and every task ends up in the results."""
    out_root = tmp_path / "eval_results"
    argv, env = launcher_call(tmp_path, "SmolLM2-135M-Instruct", "gsm8k", "codeact_agent", 1, {
        "TASK_LIMIT": "4",
        "AGENT_ARGS": f"--output_root {out_root} --n_icl 0 --max_steps 1 --max_turn 1 --max_tokens 16 "
                      "--concurrency 1"})
    servers = tmp_path / "logs" / "servers"
    with open(tmp_path / "launcher.out", "w") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            run_dir = out_root / "codeact_agent.SmolLM2-135M-Instruct" / "greedy_1_1"
            killed, finished = kill_server_after_first_row(proc, run_dir, servers / f"{env['PORT_BASE']}.pid")
            assert proc.wait(900) == 0, (tmp_path / "launcher.out").read_text()
        finally:
            proc.kill()
    assert finished < 4  # the kill really happened mid-run
    log = (servers / f"{env['PORT_BASE']}.log").read_text()
    assert f"server pid {killed} exited with code -9; restart 1/3" in log and "is back" in log
    rows = [r for p in run_dir.glob("*.csv") for r in read_results(p)]
    assert sorted(r["index"] for r in rows) == [0, 1, 2, 3]
    # The launcher ends the servers it started, restarted ones included.
    assert wait_gone(int((servers / f"{env['PORT_BASE']}.pid").read_text()))
