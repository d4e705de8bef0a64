"""The sandbox that runs model-written code: one pool of forked, parked Python processes.

Design (host side here, process side in sandbox_worker.py):
- A pool starts ONE zygote process, on Linux as root inside `unshare -n -m` (no network; a fresh
  root holding only what Python and the environments need, see Protections). It pre-imports
  `preload` so forks are cheap. Its environment is the allowed part of ours (ENV_ALLOWED).
- new_episode(): the zygote forks an episode root, which leads a new session, gets its own mount
  namespace and 64 MiB tmpfs, drops to a fresh unprivileged uid (so RLIMIT_NPROC bites and the
  whole episode can be killed by uid), enters a private working directory, runs the optional
  setup and parks. A parked process is a "snapshot".
- run(snapshot, code): the snapshot forks a child (copy-on-write), the child runs the code in the
  persistent globals and parks as the new snapshot; the parent stays intact, so a node can branch
  any number of times. Timeout or crash: the child's process group is killed and the new node
  shares the parent's state.
- Every snapshot also remembers its lineage (parent + code). If its process is gone (evicted by
  the LRU bound, released, or killed by model code) it is rebuilt by replaying the codes from the
  nearest live ancestor, or from a fresh episode with the same setup.
Each process has its own unix socket to the host (a socketpair end passed with the fork command),
so asyncio can drive hundreds of runs at once; a semaphore bounds how many execute together.
Not snapshotted: files. All snapshots of an episode share its working directory.

Protections (the isolated mode, as root with `unshare`; without it start() says what is missing):
- Environment: episodes see only ENV_ALLOWED of the host's variables (no API keys or tokens).
- Files: a fresh root holding, read-only, only the system directories, the interpreter and its
  sys.path, the project's packages and the data directories; a /proc showing each episode uid only
  its own processes. Each episode gets its own tmpfs of 64 MiB in total (sandbox_worker.
  EPISODE_FILES_BYTES) at /tmp, /var/tmp, /dev/shm and its working directory, in its own mount
  namespace, so the kernel frees it with the episode's last process.
- Lifetime: an episode ends when its last live process is gone (released, evicted, dropped
  without release, killed); the zygote then kills its uid and its session, so processes that
  detached with setsid die too. close() kills everything below the zygote.
- Floods: a step that leaves more than FLOOD_THREADS threads is rolled back; a fork that fails on
  the episode's process limit stops the episode's stray processes (keeping its states) and retries.
"""
import asyncio
import json
import os
import random
import select
import shutil
import signal
import socket
import sys
import tempfile
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from densepolicy import paths

PROJECT_ROOT = paths.ROOT
WORKER = Path(__file__).resolve().parent / "sandbox_worker.py"
ZYGOTE_TIMEOUT = 120.0  # seconds for the zygote to start and import the preloaded modules
# Seconds for an episode root to start and run its setup (BabyAI: at most about 1 s, even with 16
# at once beside a busy model server). A setup that misses it is retried once in a fresh episode:
# a demo's tree stage once saw one hang for the whole deadline while the next one was instant, and
# its error would otherwise have reached the model as the outcome of its action.
SETUP_TIMEOUT = 60.0
SETUP_ATTEMPTS = 2
REPLY_TIMEOUT = 10.0    # seconds for a parked process to answer a fork command
UID_BASE = 10_000_000   # episode uids: UID_BASE + block * 1000 + i, block random per pool
MAX_MSG = 16 << 20
# The only host environment variables an episode sees: locale and search path for the programs
# model code runs, and the data locations the environments' setup functions read. Everything else
# (API keys, hub tokens, cloud credentials) stays out; HOME/TMPDIR/PWD point into the episode.
ENV_ALLOWED = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "DATA_DIR", "ALFWORLD_DATA")
ENV_ALLOWED_PREFIXES = ("LC_",)


@dataclass
class ExecResult:
    output: str            # truncated observation text (stdout+stderr, traceback, or error message)
    timed_out: bool
    crashed: bool          # process died / killed
    status: dict | None    # env.status() after the step when the episode has a setup env, else None
    # The sandbox, not the code, failed (a state it could not rebuild, a set-up that hung): the
    # outcome says nothing about the action, so pairs over it are dropped (densepolicy/pairs.py).
    sandbox_error: bool = False


class Snapshot:
    """One node state: a parked process when live, and always the lineage to rebuild it.

    root:  parent None, holds setup/setup_kwargs.   step: parent + code.
    alias: parent + code None (a timed-out or crashed step: same state as the parent)."""
    __slots__ = ("parent", "code", "setup", "setup_kwargs", "status", "_proc", "__weakref__")

    def __init__(self, parent=None, code=None, setup=None, setup_kwargs=None, status=None):
        self.parent, self.code, self.status, self._proc = parent, code, status, None
        self.setup, self.setup_kwargs = setup, setup_kwargs

    def __repr__(self):
        depth, s = 0, self
        while s.parent is not None:
            depth, s = depth + 1, s.parent
        return f"<Snapshot depth={depth} live={self._proc is not None and self._proc.alive}>"


class _Dead(Exception):
    """The process we talked to is gone."""


class _Proc:
    """Host end of one worker process's socket."""

    def __init__(self, sock, pid, episode=None):
        self.sock, self.pid, self.episode = sock, pid, episode
        self.uid = episode.uid if episode else None
        self.lock = asyncio.Lock()  # one command at a time: replies come back in order
        self.alive = True
        self.pins = 0               # steps forking from it right now
        if episode:
            episode.procs.add(self)

    def close(self):
        """Safe from a garbage-collector finalizer in any thread: no awaiting here."""
        if self.alive:
            self.alive = False
            self.sock.close()  # the parked process reads EOF and exits
            if self.episode:
                self.episode.procs.discard(self)
                if not self.episode.procs:
                    self.episode.over()

    def usable(self):
        """Alive as far as we can tell without a round trip: a parked process never speaks
        first, so a readable socket means EOF (it died) or garbage (model code wrote on it)."""
        if self.alive and select.select([self.sock], [], [], 0)[0]:
            self.close()
        return self.alive

    async def send(self, obj, fd=None):
        data = json.dumps(obj).encode()
        data = len(data).to_bytes(4, "big") + data
        try:
            if fd is None:
                await asyncio.get_running_loop().sock_sendall(self.sock, data)
                return
            while True:  # tiny message; the peer's buffer is empty unless it is wedged
                try:
                    n = socket.send_fds(self.sock, [data], [fd])
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.005)
            if n < len(data):
                await asyncio.get_running_loop().sock_sendall(self.sock, data[n:])
        except OSError as exc:
            raise _Dead(str(exc)) from None

    async def _exact(self, n):
        loop, buf = asyncio.get_running_loop(), bytearray()
        while len(buf) < n:
            try:
                chunk = await loop.sock_recv(self.sock, n - len(buf))
            except OSError as exc:
                raise _Dead(str(exc)) from None
            if not chunk:
                raise _Dead("EOF")
            buf += chunk
        return bytes(buf)

    async def recv(self):
        n = int.from_bytes(await self._exact(4), "big")
        if n > MAX_MSG:
            raise _Dead("oversized message")
        try:
            msg = json.loads(await self._exact(n))
        except ValueError:
            raise _Dead("garbled message") from None
        if not isinstance(msg, dict):
            raise _Dead("garbled message")
        return msg


class _Episode:
    """The processes of one episode root and everything forked from it. Once none of them is
    live on the host side, the episode is over and the zygote kills whatever of it remains."""

    def __init__(self, pool, uid, name):
        self.pool, self.uid, self.name, self.sid = pool, uid, name, None
        self.procs = set()  # its live _Procs; each removes itself on close()

    def over(self):
        self.pool._episode_over(self)


def sandbox_env(environ=None) -> dict:
    """The environment the sandbox processes start with: the allowed part of `environ`."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items()
            if k in ENV_ALLOWED or k.startswith(ENV_ALLOWED_PREFIXES)}


def default_readable() -> tuple[str, ...]:
    """The data directories named by the environment, and ../shared/data beside the project."""
    return tuple(p for p in (os.environ.get("DATA_DIR"), os.environ.get("ALFWORLD_DATA"),
                             str(paths.SHARED_DATA)) if p)


def _can_isolate():
    return (sys.platform.startswith("linux") and os.geteuid() == 0
            and shutil.which("unshare") is not None)


class SandboxPool:
    def __init__(self, *, timeout: float = 5.0, memory_bytes: int = 4 << 30, max_procs: int = 64,
                 output_limit: int = 2000, max_snapshots: int = 256, preload: tuple[str, ...] = (),
                 isolate: bool = True, max_concurrency: int | None = None,
                 readable: tuple[str, ...] = ()):
        self.timeout, self.memory_bytes, self.max_procs = timeout, memory_bytes, max_procs
        # Host directories episodes must read (data). The private /tmp would hide any of them
        # that live under /tmp, so they are bound back in at the same path.
        self.readable = tuple(readable) + default_readable()
        self.output_limit, self.max_snapshots, self.preload = output_limit, max_snapshots, preload
        self.isolate = isolate
        # Steps are CPU-bound and timed in wall-clock seconds: more at once only causes timeouts.
        self.max_concurrency = max_concurrency or max(4, 2 * (os.cpu_count() or 1))
        self.stats = {"forks": 0, "episodes": 0, "replays": 0, "evictions": 0, "timeouts": 0,
                      "crashes": 0, "live": 0, "setup_timeouts": 0}
        self.isolated = False          # namespaces in effect
        self.drop_privileges = False   # episode uids in effect
        self._zygote = None
        self._zproc = None
        self._live = OrderedDict()     # _Proc -> None, least recently used first
        self._uids = set()
        self._uid_next = 0
        self._uid_block = random.randrange(4_000_000)
        self._tmp = None
        self._sem = None
        self._closed = False
        self._loop = None
        self._ending = []              # episodes over, for the reaper task to end in the zygote
        self._wake = None
        self._reaper = None

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.close()

    # ---- lifecycle ----

    async def start(self) -> None:
        self._sem = asyncio.Semaphore(self.max_concurrency)
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        self.drop_privileges = os.name == "posix" and os.geteuid() == 0
        want_ns = self.isolate and _can_isolate()
        why = None
        if self.isolate and not want_ns:
            why = "namespaces unavailable (needs Linux, root and `unshare`)"
        if want_ns:
            try:
                await self._start_zygote(True)
            except RuntimeError as exc:
                why = f"isolated zygote failed ({exc})"
        if not self.isolated:
            await self._start_zygote(False)
        if why:
            print(f"densepolicy.sandbox: warning: {why}; missing: network isolation, the "
                  "restricted file view (host files and /proc readable), the per-episode file "
                  "quota, and detached (setsid) processes may outlive their episode until close()"
                  + ("" if self.drop_privileges else
                     "; model code runs as this user, without a process limit"), file=sys.stderr)
        self._reaper = asyncio.create_task(self._reap_episodes())

    async def _start_zygote(self, isolated):
        if not isolated:  # episode dirs then live in a host temp dir, removed at close()
            self._tmp = tempfile.mkdtemp(prefix="densepolicy-sandbox-")
        work_root = "/tmp/densepolicy-sandbox" if isolated else self._tmp
        cfg = {"isolate": isolated, "drop": self.drop_privileges, "work_root": work_root,
               "project_root": str(PROJECT_ROOT), "preload": list(self.preload),
               "readable": [os.path.abspath(p) for p in self.readable if p and os.path.isdir(p)],
               "timeout": self.timeout,
               "memory_bytes": self.memory_bytes, "max_procs": self.max_procs,
               "max_snapshots": self.max_snapshots, "output_limit": self.output_limit}
        host, child = socket.socketpair()
        cmd = [sys.executable, "-I", str(WORKER), str(child.fileno()), json.dumps(cfg)]
        if isolated:
            cmd = [shutil.which("unshare"), "-n", "-m", "--"] + cmd
        self._zygote = await asyncio.create_subprocess_exec(
            *cmd, pass_fds=[child.fileno()], stdin=asyncio.subprocess.DEVNULL,
            start_new_session=True, env=sandbox_env())
        child.close()
        host.setblocking(False)
        proc = _Proc(host, self._zygote.pid, None)
        try:
            hello = await asyncio.wait_for(proc.recv(), ZYGOTE_TIMEOUT)
        except (_Dead, asyncio.TimeoutError):
            hello = {"ok": False, "error": "zygote did not start"}
        if not hello.get("ok"):
            proc.close()
            await self._kill_zygote()
            raise RuntimeError("sandbox zygote failed to start: " + hello.get("error", "?"))
        self._zproc, self.isolated = proc, bool(hello.get("isolated"))
        if self.drop_privileges and not hello.get("drop"):
            self.drop_privileges = False
            print("densepolicy.sandbox: warning: the Python installation is not readable by other "
                  "users; model code runs as root (without namespaces)", file=sys.stderr)

    async def _kill_zygote(self):
        if self._zygote is not None and self._zygote.returncode is None:
            try:
                self._zygote.kill()
            except ProcessLookupError:
                pass
            await self._zygote.wait()
        self._zygote = None

    async def close(self) -> None:
        """Kill every sandbox process (each episode uid's strays included) and the zygote."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
        for proc in list(self._live):
            proc.close()
        self._live.clear()
        self.stats["live"] = 0
        if self._zproc is not None:
            self._zproc.close()  # on EOF the zygote kills all its episode uids, then exits
            try:
                await asyncio.wait_for(self._zygote.wait(), 10)
            except asyncio.TimeoutError:
                pass
        await self._kill_zygote()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)

    # ---- episode ends ----

    def _episode_over(self, episode):
        self._ending.append(episode)
        try:  # maybe called by a finalizer in another thread: wake the reaper thread-safely
            self._loop.call_soon_threadsafe(self._wake.set)
        except (RuntimeError, AttributeError):  # the loop is closed: the zygote's exit kills all
            pass

    async def _reap_episodes(self):
        """Ends, in the zygote, every episode that is over (see _Episode)."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._ending and self._zproc is not None and self._zproc.alive:
                    ep = self._ending.pop(0)
                    async with self._zproc.lock:
                        await self._zproc.send({"op": "end", "uid": ep.uid, "sid": ep.sid,
                                                "name": ep.name})
                        await asyncio.wait_for(self._zproc.recv(), REPLY_TIMEOUT)
                    self._uids.discard(ep.uid)
        except (_Dead, asyncio.TimeoutError):  # the zygote is gone: nothing of it is left to end
            self._ending.clear()

    async def settle(self) -> None:
        """Wait until every episode that is over has been ended in the zygote (for tests)."""
        while (self._ending or self._wake.is_set()) and self._zproc.alive:
            await asyncio.sleep(0.01)
        async with self._zproc.lock:  # an end in progress holds the lock
            pass

    async def _reclaim(self, episode):
        """Stop the episode's processes other than its live states; returns how many."""
        if episode.uid is None:
            return 0
        async with self._zproc.lock:
            await self._zproc.send({"op": "reclaim", "uid": episode.uid,
                                    "keep": [p.pid for p in list(episode.procs)]})
            return (await asyncio.wait_for(self._zproc.recv(), REPLY_TIMEOUT)).get("stopped", 0)

    # ---- live process bookkeeping ----

    def _attach(self, snap, proc):
        snap._proc = proc
        # Closing the socket is all a garbage-collected snapshot needs (and is safe inside GC);
        # its closed entry is purged from the LRU below.
        weakref.finalize(snap, proc.close)
        for p in [p for p in self._live if not p.alive]:
            del self._live[p]
        self._live[proc] = None
        self._evict(keep=proc)
        self.stats["live"] = len(self._live)

    def _drop(self, proc):
        proc.close()
        self._live.pop(proc, None)
        self.stats["live"] = len(self._live)

    def _touch(self, proc):
        if proc in self._live:
            self._live.move_to_end(proc)

    def _evict(self, keep):
        over = len(self._live) - self.max_snapshots
        for proc in list(self._live):
            if over <= 0:
                break
            if proc is not keep and not proc.pins:  # never one that is in use right now
                self._drop(proc)
                self.stats["evictions"] += 1
                over -= 1

    def release(self, snapshot: Snapshot) -> None:
        """Kill the snapshot's process now; the snapshot stays usable (rebuilt by replay)."""
        if snapshot._proc is not None:
            self._drop(snapshot._proc)
            snapshot._proc = None

    def _new_uid(self):
        if not self.drop_privileges:
            return None
        uid = UID_BASE + self._uid_block * 1000 + self._uid_next % 1000
        self._uid_next += 1
        return uid

    # ---- forking ----

    async def _fork(self, parent, job, timeout, uid=None, episode=None):
        """Fork `parent` (a _Proc), send `job` to the child, wait for its reply.

        Returns (child _Proc or None, reply or None, timed_out). Raises _Dead if the parent is
        gone."""
        host, child = socket.socketpair()
        host.setblocking(False)
        try:
            async with parent.lock:
                msg = {"op": "fork"} if uid is None else {"op": "fork", "uid": uid}
                await parent.send(msg, fd=child.fileno())
                child.close()
                try:
                    reply = await asyncio.wait_for(parent.recv(), REPLY_TIMEOUT)
                except asyncio.TimeoutError:
                    raise _Dead("no reply") from None
        except BaseException:  # dead, or cancelled mid-exchange: either way out of step with us
            host.close()
            child.close()
            parent.close()
            raise
        if "pid" not in reply:  # e.g. fork failed (process limit): the parent itself is fine
            host.close()
            return None, {"error": reply.get("error", "fork failed"),
                          "eagain": reply.get("eagain")}, False
        proc = _Proc(host, reply["pid"], episode or parent.episode)
        if episode is not None:  # an episode root: it leads the episode's session
            episode.sid = proc.pid
        self.stats["forks"] += 1
        try:
            await proc.send(job)
            reply = await asyncio.wait_for(proc.recv(), timeout)
            if "rejected" in reply:  # the step undid itself (e.g. a thread flood) and exits
                self._kill_group(proc)
                return None, {"error": reply["rejected"]}, False
            return proc, reply, False
        except asyncio.TimeoutError:
            stuck = self._where_stuck(proc) if episode is not None else None
            self._kill_group(proc)
            return None, ({"stuck": stuck} if stuck else None), True
        except _Dead:
            self._kill_group(proc)
            return None, None, False
        except BaseException:  # cancelled: do not leave the child running
            self._kill_group(proc)
            raise

    @staticmethod
    def _where_stuck(proc) -> str:
        """A setup past its deadline: its kernel state and wait channel, for the log. (Its Python
        stack would need a channel from the sandbox to the host's log, which model code must not
        have.)"""
        try:
            stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            wchan = Path(f"/proc/{proc.pid}/wchan").read_text().strip() or "-"
        except (OSError, IndexError):
            return "process gone"
        return f"pid {proc.pid}, state {stat[0]}, waiting in {wchan}"

    def _kill_group(self, proc):
        proc.close()
        for kill in (os.killpg, os.kill):
            try:
                kill(proc.pid, signal.SIGKILL)
            except OSError:
                pass

    async def _start_root(self, setup, setup_kwargs):
        """A fresh episode root process. Returns (_Proc, reply)."""
        for attempt in range(1, SETUP_ATTEMPTS + 1):
            proc, reply, timed_out = await self._try_root(setup, setup_kwargs)
            if proc is not None and reply.get("ok"):
                return proc, reply
            if proc is not None:
                self._kill_group(proc)
            if not timed_out:
                break
            self.stats["setup_timeouts"] += 1
            print(f"densepolicy.sandbox: episode setup {setup!r} gave no reply within {SETUP_TIMEOUT:g} s "
                  f"({(reply or {}).get('stuck', '?')}); "
                  + ("trying a fresh episode" if attempt < SETUP_ATTEMPTS else "giving up"),
                  file=sys.stderr, flush=True)
        why = ("timed out" if timed_out else (reply or {}).get("error", "the process died"))
        raise RuntimeError(f"sandbox episode setup {setup!r} failed: {why}")

    async def _try_root(self, setup, setup_kwargs):
        """One attempt at an episode root: _fork's (proc, reply, timed_out)."""
        if self._zproc is None or not self._zproc.alive:
            raise RuntimeError("sandbox pool is not running (call start() or use `async with`)")
        uid = self._new_uid()
        if uid is not None:
            if uid in self._uids:  # the uid block wrapped: clear out its previous owner
                async with self._zproc.lock:
                    await self._zproc.send({"op": "end", "uid": uid})
                    await self._zproc.recv()
            self._uids.add(uid)
        self.stats["episodes"] += 1
        episode = _Episode(self, uid, f"ep-{self.stats['episodes']}-{uid or 0}")
        job = {"setup": setup, "kwargs": setup_kwargs or {}, "uid": uid, "name": episode.name}
        async with self._sem:
            try:
                return await self._fork(self._zproc, job, SETUP_TIMEOUT, uid, episode)
            except _Dead:
                raise RuntimeError("sandbox zygote died") from None

    async def new_episode(self, setup: str | None = None,
                          setup_kwargs: dict | None = None) -> tuple[Snapshot, dict]:
        json.dumps(setup_kwargs or {})  # must cross a process boundary: fail here, clearly
        proc, reply = await self._start_root(setup, setup_kwargs)
        snap = Snapshot(setup=setup, setup_kwargs=setup_kwargs, status=reply.get("status"))
        self._attach(snap, proc)
        return snap, ({"observation": reply.get("observation") or ""} if setup else {})

    # ---- running code ----

    async def _live_proc(self, snap):
        """The live process holding `snap`'s state, rebuilding it by replay if needed."""
        chain, s = [], snap
        while (s._proc is None or not s._proc.usable()) and s.parent is not None:
            if s.code is not None:  # aliases add nothing to replay
                chain.append(s)
            s = s.parent
        if s._proc is None or not s._proc.usable():  # nothing live: a fresh episode, same setup
            proc, _ = await self._start_root(s.setup, s.setup_kwargs)
            self._attach(s, proc)
        base = s._proc
        for node in reversed(chain):
            self.stats["replays"] += 1
            # Generous timeout: this code finished before; a busy machine must not break it now.
            proc, reply, timed_out = await self._step(base, node.code, 3 * self.timeout)
            if proc is None:
                raise RuntimeError("could not rebuild the state by replay: "
                                   + self._failure(reply, timed_out, 3 * self.timeout))
            self._attach(node, proc)
            base = proc
        self._touch(base)
        return base

    async def _step(self, base, code, timeout):
        """Fork `base` and run `code` in the child: (child _Proc or None, reply, timed_out)."""
        base.pins += 1  # not evicted while we use it
        try:
            async with self._sem:
                return await self._fork(base, {"code": code}, timeout)
        finally:
            base.pins -= 1

    def _failure(self, reply, timed_out, timeout):
        if timed_out:
            self.stats["timeouts"] += 1
            return (f"TimeoutError: the code did not finish within {timeout:g} s and was "
                    "stopped; the state is as before this action.")
        if reply is not None:  # the fork itself failed, e.g. the episode's process limit
            return f"SandboxError: {reply.get('error')}; the state is as before this action."
        self.stats["crashes"] += 1
        return ("Crash: the Python process running this code died (e.g. a segmentation fault, "
                "os._exit() or a kill signal); the state is as before this action.")

    async def run(self, snapshot: Snapshot, code: str) -> tuple[Snapshot, ExecResult]:
        """Run `code` on top of `snapshot`; `snapshot` itself is left unchanged."""
        if self._closed or self._zproc is None:
            raise RuntimeError("sandbox pool is not running (use `async with SandboxPool()`)")
        unchanged = Snapshot(snapshot, status=snapshot.status)  # the result when the step fails
        note = ""
        for _ in range(5):  # the base may die under us (e.g. killed by a sibling): rebuild it
            try:
                base = await self._live_proc(snapshot)
                proc, reply, timed_out = await self._step(base, code, self.timeout)
            except _Dead:
                continue
            except RuntimeError as exc:
                return unchanged, ExecResult(f"SandboxError: {exc}", False, True, snapshot.status,
                                             sandbox_error=True)
            if proc is None and reply and reply.get("eagain") and not note and base.episode:
                # Strays of earlier actions (e.g. detached sleepers) fill the process limit:
                # stop them once, keeping the episode's states, and try again.
                n = await self._reclaim(base.episode)
                note = (f"[Note: this episode reached its limit of processes and threads; {n} "
                        "processes left running by earlier actions were stopped.]\n")
                continue
            break
        else:
            return unchanged, ExecResult("SandboxError: the state's process keeps dying", False, True,
                                         snapshot.status, sandbox_error=True)
        if proc is None:
            out = note + self._failure(reply, timed_out, self.timeout)
            return unchanged, ExecResult(out, timed_out, not timed_out, snapshot.status)
        child = Snapshot(snapshot, code, status=reply.get("status"))
        self._attach(child, proc)
        return child, ExecResult(note + str(reply.get("output", "")), False, False, child.status)
