"""Model server supervision: start a server command, health-check it, restart it when it dies or
stops answering (a bounded number of times), and give up with a clear message when it cannot
come back.

Both launchers use it: the tmux launcher runs `python -m densepolicy.supervisor` in the server's
session, a Ray worker runs a `Supervisor` in its own event loop. Agents are not told about a
restart: their LLM client retries connection errors and 5xx until the server answers again, so
in-flight requests are simply sent again.

    python -m densepolicy.supervisor --port 8000 --log logs/servers/8000.log -- 'vllm serve M ...'
"""
import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from densepolicy.engines import healthy

# Run the server through this shim so that it dies with whoever started it (PR_SET_PDEATHSIG
# survives exec): a supervisor or Ray worker killed with SIGKILL must not leave an orphaned
# server holding a GPU. The pid check closes the race where the parent died before prctl. bash
# execs a lone simple command (`VAR=x prog args`) in place, so the pid stays the server's own.
_SHIM = ("import ctypes, os, signal, sys\n"
         "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)\n"
         "os.getppid() == int(sys.argv[2]) or os._exit(1)\n"
         "os.execvp('bash', ['bash', '-c', sys.argv[1]])\n")


class ServerDown(RuntimeError):
    """The server could not be started, or died and could not be restarted."""


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is fine
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


class Supervisor:
    """One server process on `port`: `await start()` brings it up, `watch()` keeps it up.

    A server that exits, or fails `max_failed_checks` health checks in a row, is killed (its whole
    process group) and started again, at most `max_restarts` times in the supervisor's life. When
    that budget is spent, or a restart does not answer within `start_timeout`, `failed` holds the
    reason and `gone` is set. The first start is not retried: a server that never came up is a
    configuration error, and restarting it would only hide the message.
    """

    def __init__(self, command: str, port: int, log_path: str | os.PathLike, *, max_restarts: int = 3,
                 start_timeout: float = 900.0, check_every: float = 5.0, max_failed_checks: int = 6,
                 host: str = "127.0.0.1"):
        self.command, self.port, self.host = command, port, host
        self.log_path = Path(log_path)
        self.pid_path = self.log_path.with_suffix(".pid")  # the server's own pid, for tests and users
        self.max_restarts, self.start_timeout = max_restarts, start_timeout
        self.check_every, self.max_failed_checks = check_every, max_failed_checks
        self.restarts = 0
        self.failed: str | None = None
        self.gone = asyncio.Event()
        self.proc: subprocess.Popen | None = None

    def say(self, message: str):
        line = f"[{time.strftime('%H:%M:%S')}] supervisor (port {self.port}): {message}"
        print(line, flush=True)
        with open(self.log_path, "a") as log:
            log.write(line + "\n")

    def _spawn(self, fresh: bool = False):
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if fresh:
            self.log_path.write_bytes(b"")
        with open(self.log_path, "ab") as log:  # O_APPEND: the server's lines and ours interleave
            # Own session: a kill of the process group reaches everything the server started.
            self.proc = subprocess.Popen([sys.executable, "-c", _SHIM, self.command, str(os.getpid())],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_path.write_text(f"{self.proc.pid}\n")

    def kill(self):
        """SIGKILL the server's process group (uvicorn's graceful shutdown can hang) and reap it."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    async def _healthy(self) -> bool:
        return await asyncio.to_thread(healthy, self.port, self.host)

    async def _wait_up(self) -> str | None:
        """None once the server answers /health, else why it did not."""
        deadline = time.monotonic() + self.start_timeout
        while not await self._healthy():
            if self.proc.poll() is not None:
                return f"server exited with code {self.proc.returncode} before answering on port {self.port}"
            if time.monotonic() > deadline:
                return f"server on port {self.port} not healthy after {self.start_timeout:.0f}s"
            await asyncio.sleep(1.0)
        return None

    async def start(self):
        """Start the server and wait for /health; raises ServerDown (naming the log) if it fails."""
        # A server of a run that just ended may still be on its way out: give it a moment.
        for _ in range(10):
            if port_free(self.port, self.host):
                break
            await asyncio.sleep(1.0)
        else:  # not probed: what holds the port may not even speak HTTP
            raise ServerDown(f"port {self.port} is already in use; stop what holds it or set PORT_BASE")
        self._spawn(fresh=True)
        self.say(f"started server pid {self.proc.pid} on port {self.port}: {self.command}")
        why = await self._wait_up()
        if why:
            self.kill()
            raise ServerDown(f"{why} (log: {self.log_path})")
        self.say(f"server on port {self.port} is up")

    async def watch(self):
        """Keep the server up until cancelled, or until it cannot come back (sets `failed`)."""
        failed_checks, last_check = 0, time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            if self.proc.poll() is not None:
                why = f"server pid {self.proc.pid} exited with code {self.proc.returncode}"
            elif time.monotonic() - last_check >= self.check_every:
                last_check = time.monotonic()
                failed_checks = 0 if await self._healthy() else failed_checks + 1
                if failed_checks < self.max_failed_checks:
                    continue
                why = f"server pid {self.proc.pid} failed {failed_checks} health checks in a row"
            else:
                continue
            failed_checks = 0
            while why:
                if self.restarts >= self.max_restarts:
                    self.fail(f"{why}; gave up after {self.restarts} restart(s) (log: {self.log_path})")
                    return
                self.restarts += 1
                self.kill()
                self.say(f"{why}; restart {self.restarts}/{self.max_restarts}")
                self._spawn()
                why = await self._wait_up()
            self.say(f"server on port {self.port} is back (pid {self.proc.pid})")
            last_check = time.monotonic()

    def fail(self, message: str):
        self.kill()
        self.failed = message
        self.say(message)
        self.gone.set()


async def _main(args) -> int:
    sup = Supervisor(args.command, args.port, args.log, max_restarts=args.max_restarts,
                     start_timeout=args.start_timeout, check_every=args.check_every)
    # tmux kill-session sends SIGHUP; the server sits in its own session, so end it ourselves.
    stop = asyncio.Event()
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    try:
        await sup.start()
        watcher = asyncio.ensure_future(sup.watch())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({watcher, stopper}, return_when=asyncio.FIRST_COMPLETED)
        watcher.cancel()
        stopper.cancel()
    except ServerDown as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        sup.kill()
    if sup.failed:
        print(f"error: {sup.failed}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Run a model server and keep it up.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", required=True, help="server log (the pid goes next to it, .pid)")
    p.add_argument("--max_restarts", type=int, default=3)
    p.add_argument("--start_timeout", type=float, default=900.0)
    p.add_argument("--check_every", type=float, default=5.0, help="seconds between health checks")
    p.add_argument("command", help="the server command line (one string, run by bash)")
    return asyncio.run(_main(p.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
