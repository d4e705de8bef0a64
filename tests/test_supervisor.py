"""densepolicy/supervisor.py on a stand-in server (a real process answering /health; the real
model server is killed in test_launcher.py and test_ray.py): restart on death, bounded restarts,
a first start that fails, a busy port, and the CLI the tmux launcher runs."""
import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, free_port, wait_gone
from densepolicy.supervisor import ServerDown, Supervisor, healthy

# A tiny HTTP server: /health answers 200. SLEEP_FIRST delays its start like a model load.
FAKE = (f"{sys.executable} -c 'import http.server, sys, time\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200 if self.path == \"/health\" else 404); self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        "time.sleep(float(sys.argv[2]))\n"
        "http.server.HTTPServer((\"127.0.0.1\", int(sys.argv[1])), H).serve_forever()' {port} 0.2")


def supervisor(tmp_path, command=FAKE, **kw):
    port = free_port()
    return Supervisor(command.format(port=port), port, tmp_path / "server.log",
                      start_timeout=30, check_every=1, **kw)


def test_a_killed_server_is_restarted_then_given_up_when_restarts_are_spent(tmp_path):
    async def go():
        sup = supervisor(tmp_path, max_restarts=1)
        await sup.start()
        watch = asyncio.ensure_future(sup.watch())
        first = int(sup.pid_path.read_text())
        assert "http.server" in open(f"/proc/{first}/cmdline").read()  # the server itself, not a shell
        os.kill(first, signal.SIGKILL)
        while "is back" not in sup.log_path.read_text():  # the supervisor saw it answer again
            assert not watch.done()
            await asyncio.sleep(0.2)
        second = int(sup.pid_path.read_text())
        os.kill(second, signal.SIGKILL)
        await asyncio.wait_for(sup.gone.wait(), 60)
        await watch
        return first, second, sup

    first, second, sup = asyncio.run(go())
    assert sup.restarts == 1 and "gave up after 1 restart(s)" in sup.failed
    log = (tmp_path / "server.log").read_text()
    assert f"server pid {first} exited with code -9; restart 1/1" in log
    assert f"is back (pid {second})" in log and "gave up" in log
    assert not healthy(sup.port)


def test_a_server_that_never_comes_up_is_not_restarted(tmp_path):
    sup = supervisor(tmp_path, command="echo model not found; exit 3")
    with pytest.raises(ServerDown, match=r"exited with code 3 .*log: .*server\.log"):
        asyncio.run(sup.start())
    assert "model not found" in (tmp_path / "server.log").read_text()


def test_a_busy_port_is_refused(tmp_path):
    async def go():
        a = supervisor(tmp_path)
        await a.start()
        try:
            b = Supervisor(FAKE.format(port=a.port), a.port, tmp_path / "b.log", start_timeout=30)
            with pytest.raises(ServerDown, match=f"port {a.port} is already in use"):
                await b.start()
        finally:
            a.kill()
    asyncio.run(go())


def test_cli_stops_its_server_on_sighup(tmp_path):
    """tmux kill-session sends SIGHUP: the supervisor must take its server down with it."""
    port = free_port()
    log = tmp_path / "server.log"
    proc = subprocess.Popen([sys.executable, "-m", "densepolicy.supervisor", "--port", str(port),
                             "--log", str(log), FAKE.format(port=port)], cwd=ROOT)
    try:
        while not healthy(port):
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        pid = int(log.with_suffix(".pid").read_text())
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(30) == 0
        assert wait_gone(pid) and not healthy(port)
    finally:
        proc.kill()
