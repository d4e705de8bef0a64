"""Shared fixtures: the real embedded model behind a real `transformers serve` process."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


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
    return resolve_model("SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def model_server(model_path, tmp_path_factory):
    """(base_url, served model name) of a real CPU server for the whole test session."""
    port = free_port()
    cache = tmp_path_factory.mktemp("hf_cache")
    log = open(tmp_path_factory.mktemp("server") / "server.log", "w")
    cli = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    proc = subprocess.Popen([cli, "serve", "--continuous-batching", "--host", "127.0.0.1",
                             "--port", str(port), model_path],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_CACHE": str(cache)},
                            start_new_session=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}/v1", model_path
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
