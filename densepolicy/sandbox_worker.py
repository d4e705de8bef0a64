"""Sandbox worker: the process side of densepolicy.sandbox (see that module for the design).

One program plays three roles, all in the same serve() loop:
  zygote        started once per pool (under `unshare -n -m` when possible); on "fork" it makes an
                episode root.
  episode root  drops to an unprivileged uid, chdirs into a private working directory, runs the
                optional setup, then parks.
  snapshot      a parked process holding the interpreter state of one tree node; on "fork" it
                makes a child that runs one code action and then parks as the new snapshot.

Every process talks to the host over its own unix socket: the host makes a socketpair, sends one
end along with the "fork" command (SCM_RIGHTS), and the forked child keeps it. Messages are a
4-byte length followed by JSON.

Run as:  python -I sandbox_worker.py <socket fd> <config json>
"""
import ast
import builtins
import ctypes
import io
import json
import math
import os
import resource
import signal
import socket
import sys
import traceback

CFG = {}        # pool configuration, from argv
ENV = None      # tool environment built by setup, if any
WORKDIR = None  # this episode's private working directory
GLOBALS = {"__name__": "__main__", "__builtins__": builtins}  # the model's interpreter state
EXIT_REFUSED = ("exit() / quit() / sys.exit() are not allowed here: the interpreter session "
                "continues and its state is kept.")


# ---- messages ----

def send(conn, obj):
    data = json.dumps(obj, default=str).encode()
    conn.sendall(len(data).to_bytes(4, "big") + data)


def _recv_exact(conn, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv(conn):
    """One message and the fds that came with it; (None, []) when the host has gone."""
    try:
        head, fds, _, _ = socket.recv_fds(conn, 4, 4)
    except OSError:
        return None, []
    if len(head) < 4:
        rest = _recv_exact(conn, 4 - len(head)) if head else None
        if rest is None:
            return None, fds
        head += rest
    body = _recv_exact(conn, int.from_bytes(head, "big"))
    return (json.loads(body) if body is not None else None), fds


# ---- capped output ----

class CappedWriter(io.TextIOBase):
    """sys.stdout/sys.stderr for one step: writes to fd 1 until `cap` characters, then only counts.

    Writing straight to fd 1 keeps Python output and subprocess output in one ordered stream,
    and the cap makes print('x' * 10**8) cost a string slice instead of 100 MB of I/O."""

    def __init__(self, cap):
        self.cap, self.written, self.dropped = cap, 0, 0

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.cap - self.written
        if room > 0:
            part = s[:room]
            try:
                os.write(1, part.encode("utf-8", "replace"))
            except OSError:
                pass
            self.written += len(part)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def writable(self):
        return True

    def fileno(self):
        return 1

    @property
    def encoding(self):
        return "utf-8"


def _refuse_input(prompt=""):
    raise RuntimeError("input() is not supported here: the code runs non-interactively; "
                       "put the values in the code instead.")


# ---- running one action ----

def _format_exception(exc):
    """REPL-style traceback text, without the frames of this file."""
    te, seen = traceback.TracebackException.from_exception(exc), set()
    todo = [te]
    while todo:
        t = todo.pop()
        if t is None or id(t) in seen:
            continue
        seen.add(id(t))
        t.stack = traceback.StackSummary.from_list(
            [f for f in t.stack if f.filename != __file__])
        todo += [t.__cause__, t.__context__]
    return "".join(te.format())


def _exec(code):
    """Run `code` in GLOBALS like `python -i`: echo the last expression's repr unless None."""
    try:
        tree = ast.parse(code, "<stdin>")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body.pop()
        if tree.body:
            exec(compile(tree, "<stdin>", "exec"), GLOBALS)
        if last is not None:  # 'single' mode goes through sys.displayhook, which prints the repr
            exec(compile(ast.Interactive(body=[last]), "<stdin>", "single"), GLOBALS)
    except SystemExit:
        print(EXIT_REFUSED)
    except SyntaxError as exc:  # no frames worth showing
        sys.stdout.write("".join(traceback.format_exception_only(type(exc), exc)))
    except BaseException as exc:
        sys.stdout.write(_format_exception(exc))


def _capture_file():
    try:
        return os.memfd_create("out")
    except (AttributeError, OSError):
        import tempfile
        fd, path = tempfile.mkstemp(dir=WORKDIR)
        os.unlink(path)
        return fd


def _env_status():
    if ENV is None:
        return None
    try:
        return dict(ENV.status())
    except BaseException as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def run_step(job):
    """In a freshly forked child: run one action, return the result message."""
    limit = CFG["output_limit"]
    cpu = int(math.ceil(CFG["timeout"] * 4)) + 2  # bounds CPU of strays that escape the kill
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # model code may wait() on its subprocesses
    out = _capture_file()
    os.dup2(out, 1)
    os.dup2(out, 2)
    writer = CappedWriter(limit + 1)
    sys.stdout = sys.stderr = writer
    try:
        _exec(job["code"])
    finally:
        sys.stdout = sys.stderr = writer  # the code may have replaced them
    size = os.fstat(out).st_size
    head = os.pread(out, 4 * limit + 4, 0)
    text = head.decode("utf-8", "replace")
    total = len(text) + writer.dropped + max(0, size - len(head))
    if total > limit:
        text = text[:limit] + f"\n[... {total - limit} more characters of output truncated]"
    _park(out)
    return {"output": text, "status": _env_status()}


def _park(out=None):
    """Between steps: output to /dev/null, children reaped automatically."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)
    if out is not None:
        os.close(out)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)


# ---- episode root ----

def _prctl(option, arg):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def start_episode(job):
    """In a child of the zygote: limits, private dir, privilege drop, setup. Returns the reply."""
    global ENV, WORKDIR
    uid = job.get("uid")
    mem = CFG["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead
    WORKDIR = os.path.join(CFG["work_root"], job["name"])
    os.makedirs(WORKDIR, mode=0o700)
    if uid is not None:
        # Snapshots of the episode + the running step's processes. Effective only for non-root.
        n = CFG["max_snapshots"] + CFG["max_procs"] + 8
        resource.setrlimit(resource.RLIMIT_NPROC, (n, n))
        os.chown(WORKDIR, uid, uid)
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        _prctl(38, 1)  # PR_SET_NO_NEW_PRIVS: setuid binaries cannot give root back
    os.chdir(WORKDIR)
    os.environ.update(HOME=WORKDIR, TMPDIR=WORKDIR, PWD=WORKDIR)
    builtins.input = _refuse_input
    reply = {"ok": True, "observation": None}
    if job.get("setup"):
        try:
            mod_name, _, fn_name = job["setup"].partition(":")
            import importlib
            fn = getattr(importlib.import_module(mod_name), fn_name)
            ENV = fn(**(job.get("kwargs") or {}))
            GLOBALS.update(getattr(ENV, "tools", None) or {})
            reply["observation"] = str(getattr(ENV, "initial_observation", "") or "")
        except BaseException as exc:
            return {"ok": False, "error": "".join(traceback.format_exception(exc)).strip()}
    reply["status"] = _env_status()
    return reply


# ---- zygote ----

TMPFS = (("/tmp", "2g"), ("/var/tmp", "256m"), ("/dev/shm", "256m"), ("/run/lock", "16m"),
         ("/dev/mqueue", "16m"))  # every world-writable place: fresh and private in the sandbox
MS_NOSUID, MS_NODEV, MS_BIND, MS_REC = 2, 4, 4096, 16384


def _needed_paths():
    """Directories the sandboxed Python must be able to read: interpreter, libraries, project."""
    paths = [sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix,
             CFG["project_root"], os.path.dirname(os.path.realpath(sys.executable))] + sys.path
    paths = {os.path.realpath(p) for p in paths if p and os.path.isdir(p)}
    # Data directories keep the path they were named by: task files are named through it, even
    # when it runs through a symbolic link that the private /tmp would hide.
    paths = sorted(paths | {os.path.normpath(p) for p in CFG.get("readable", ())})
    kept = []
    for p in paths:  # sorted, so a parent comes before what is inside it
        if not any(p == k or p.startswith(k + "/") for k in kept):
            kept.append(p)
    return kept


def _blocked_ancestor(path):
    """The outermost directory above `path` that other users cannot enter (e.g. /root), or None."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts)):
        a = "/" + "/".join(parts[:i])
        if not os.stat(a).st_mode & 0o001:
            return a
    return None


def _under(path, top):
    return path == top or path.startswith(top.rstrip("/") + "/")


def _isolate_fs():
    """In our private mount namespace: fresh tmpfs over every world-writable place (nothing
    written there reaches the host) and over directories like /root that hide the interpreter
    from unprivileged uids; the needed directories are bind-mounted back."""
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(src, dst, fstype, flags, data):
        if libc.mount(src.encode(), dst.encode(), fstype and fstype.encode(), flags,
                      data and data.encode()) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {src} on {dst}: {os.strerror(err)}")

    anchors = {p: f"mode=1777,size={size}" for p, size in TMPFS
               if os.path.isdir(p) and not os.path.islink(p)}
    keep = _needed_paths()
    for k in keep:
        a = _blocked_ancestor(k)
        if a and not any(_under(a, b) for b in anchors):
            anchors[a] = "mode=755,size=1m"
    anchors = {a: o for a, o in anchors.items() if not any(a != b and _under(a, b) for b in anchors)}
    fds = {k: os.open(k, os.O_PATH) for k in keep if any(_under(k, a) for a in anchors)}
    for a, opts in anchors.items():
        mount("tmpfs", a, "tmpfs", MS_NOSUID | MS_NODEV, opts)
    for k, fd in fds.items():
        os.makedirs(k, mode=0o755, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", k, None, MS_BIND | MS_REC, None)
        os.close(fd)


def _kill_uid(uid):
    """Kill every process of `uid`: a root helper turns into that uid and signals -1. Waits for
    the helper, so the processes are gone when this returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # so that we can wait for this one child
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(3):  # again, in case a fork bomb raced the first pass
                os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:  # episode processes that died meanwhile became zombies: reap them
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _wait_gone(uids, wait=2.0):
    """SIGKILLed processes exit asynchronously; stay (and reap, as subreaper) until they have."""
    import time
    end = time.monotonic() + wait
    while uids and time.monotonic() < end:
        left = False
        for pid in os.listdir("/proc"):
            try:
                left = pid.isdigit() and os.stat(f"/proc/{pid}").st_uid in uids
            except OSError:
                pass
            if left:
                break
        if not left:
            return
        time.sleep(0.02)


def serve(conn, zygote):
    """The parked loop. Returns never; the process exits when the host closes the socket."""
    uids = set()
    while True:
        msg, fds = recv(conn)
        if msg is None:
            for uid in uids:
                _kill_uid(uid)
            _wait_gone(uids)
            os._exit(0)
        op = msg.get("op")
        if op == "fork" and fds:
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(fds[0])
                send(conn, {"error": f"fork failed: {exc}"})
                continue
            if pid == 0:
                conn.close()  # the host must see EOF on it when this parent dies
                for fd in fds[1:]:
                    os.close(fd)
                conn = socket.socket(fileno=fds[0])
                os.setpgid(0, 0)
                job, _ = recv(conn)
                if job is None:
                    os._exit(0)
                if zygote:
                    zygote = False
                    uids = set()
                    reply = start_episode(job)
                    send(conn, reply)
                    if not reply["ok"]:
                        os._exit(1)
                else:
                    send(conn, run_step(job))
                continue
            for fd in fds:
                os.close(fd)
            try:
                os.setpgid(pid, pid)  # also done by the child; whichever runs first wins the race
            except OSError:
                pass
            if zygote and msg.get("uid") is not None:
                uids.add(msg["uid"])
            send(conn, {"pid": pid})
        elif op == "kill_uid" and zygote:
            _kill_uid(msg["uid"])
            uids.discard(msg["uid"])
            send(conn, {"ok": True})
        else:
            for fd in fds:
                os.close(fd)
            send(conn, {"error": f"bad command {op!r}"})


def main():
    global CFG
    fd, CFG = int(sys.argv[1]), json.loads(sys.argv[2])
    conn = socket.socket(fileno=fd)
    hello = {"ok": True, "pid": os.getpid(), "isolated": False, "drop": CFG["drop"]}
    try:
        if CFG["isolate"]:
            _isolate_fs()
            hello["isolated"] = True
        elif CFG["drop"] and any(_blocked_ancestor(p) for p in _needed_paths()):
            hello["drop"] = False  # an unprivileged uid could not even import the stdlib
        os.makedirs(CFG["work_root"], mode=0o711, exist_ok=True)
        os.chmod(CFG["work_root"], 0o711)  # each episode dir inside is 0700, owned by its uid
        sys.path.insert(0, CFG["project_root"])
        os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
                          NUMEXPR_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
        for name in CFG["preload"]:
            __import__(name)
        _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: orphaned sandbox processes are reaped here
        sys.stdin = open(os.devnull)
        os.dup2(sys.stdin.fileno(), 0)
        _park()
    except BaseException as exc:
        send(conn, {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        os._exit(1)
    send(conn, hello)
    serve(conn, zygote=True)


if __name__ == "__main__":
    main()
