"""Agent command lines: bad input gives one line and a non-zero exit, and writes no result file."""
import subprocess
import sys

import pytest

from conftest import ROOT, free_port


def agent(tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "agents.codeact_agent", "--model", "m",
                           "--output_root", str(tmp_path / "er"), *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("args, code, message", [
    (["--dataset", "imagenet"], 2, "unknown dataset 'imagenet'"),
    (["--dataset", "gsm8k", "--num_shards", "2", "--shard_id", "2"], 2, "--shard_id 2 is outside 0..1"),
    (["--dataset", "gsm8k", "--data_dir", "/nonexistent"], 1, "missing /nonexistent/gsm8k/test.jsonl"),
    (["--dataset", "alfworld_put", "--data_dir", "/nonexistent"], 1, "ALFWorld"),
])
def test_bad_input(tmp_path, args, code, message):
    out = agent(tmp_path, *args)
    assert out.returncode == code, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert message in last
    assert not (tmp_path / "er").exists() or not any((tmp_path / "er").rglob("*.csv"))


def test_unreachable_server_stops_with_a_message_and_no_row(tmp_path):
    out = agent(tmp_path, "--dataset", "gsm8k", "--task_limit", "1", "--llm_retry_seconds", "2",
                "--base_url", f"http://127.0.0.1:{free_port()}/v1")
    assert out.returncode == 1
    assert "unreachable" in out.stderr.strip().splitlines()[-1]
    shards = list((tmp_path / "er").rglob("*.csv"))
    assert all(p.read_text().count("\n") == 1 for p in shards)  # a header at most, no failed row
