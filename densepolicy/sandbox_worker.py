"""Sandbox worker: the process side of densepolicy.sandbox (see that module for the design).

One program plays three roles, all in the same serve() loop:
  zygote        started once per pool (under `unshare -n -m` when possible, where it first moves
                into a fresh root: _new_root); on "fork" it makes an episode root, on "end" it
                kills every process of an episode, on "reclaim" an episode's strays.
  episode root  leads its own session, gets its own mount namespace with a private tmpfs at every
                writable place (_private_scratch), drops to an unprivileged uid, chdirs into a
                private working directory, runs the optional setup, then parks.
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
ENV = None      # tool environment built by setup, if any: the contract is dataset/environment.py
WORKDIR = None  # this episode's private working directory
GLOBALS = {"__name__": "__main__", "__builtins__": builtins}  # the model's interpreter state
EXIT_REFUSED = ("exit() / quit() / sys.exit() are not allowed here: the interpreter session "
                "continues and its state is kept.")
FILE_BYTES = 16 << 20  # per file (RLIMIT_FSIZE): one write cannot take the whole quota below
# An episode's files in total: /tmp, /var/tmp, /dev/shm and its working directory are one tmpfs,
# i.e. memory, freed by the kernel when the episode's last process (its mount namespace) is gone.
EPISODE_FILES_BYTES = 64 << 20
FULL_MARGIN = 1 << 20  # less free than this after a step: tell the model why writes fail
# Threads a parked state may keep. Each counts against the episode's process limit, so a state
# holding hundreds of sleeping threads would make every later fork of the episode fail.
FLOOD_THREADS = 32
# The file view of an isolated sandbox is a fresh root holding only these, read-only, plus the
# interpreter, its sys.path, the project's packages and the data directories (_needed_paths).
SYSTEM_DIRS = ("/usr", "/bin", "/lib", "/lib32", "/lib64", "/sbin")  # shell, echo, shared libs
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime",
             "nsswitch.conf", "passwd", "group", "hosts", "mime.types")  # nothing host-specific
DEV_NODES = ("null", "zero", "full", "random", "urandom")
SCRATCH = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")  # the writable places, all one tmpfs
_NEEDED = []    # what the isolated root holds (_needed_paths), kept for the episodes' own mounts
# The new root itself: root-owned and tiny, so episode uids cannot write there and a bug cannot
# fill memory; left writable so a write outside the scratch space fails as "Permission denied".
ROOT_TMPFS = "size=1m,mode=755"
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC = 32, 4096, 8192, 16384
CLONE_NEWNS = 0x00020000
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 4, 36, 38


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
    threads = len(os.listdir("/proc/self/task"))
    if threads > FLOOD_THREADS:  # the host answers with the parent's state; exiting stops them
        return {"rejected": f"the action left {threads - 1} threads running (a state may keep at "
                            f"most {FLOOD_THREADS - 1}); they were stopped"}
    if CFG["isolate"]:
        st = os.statvfs(WORKDIR)
        if st.f_bavail * st.f_frsize < FULL_MARGIN:
            text += (f"\n[Note: this episode's files (working directory, /tmp, /var/tmp, /dev/shm)"
                     f" are limited to {EPISODE_FILES_BYTES >> 20} MiB in total and that space is "
                     "full; delete files to write more.]")
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


def _libc_call(name, *args):
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}{args!r}: {os.strerror(err)}")


def _mount(src, dst, fstype=None, flags=0, data=None):
    enc = lambda x: x.encode() if isinstance(x, str) else x
    _libc_call("mount", enc(src), enc(dst), enc(fstype), flags, enc(data))


def _bind(fd, dst, readonly=True):
    """Bind what O_PATH `fd` names at `dst` (created as needed), read-only; closes `fd`."""
    if os.path.isdir(f"/proc/self/fd/{fd}"):
        os.makedirs(dst, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), mode=0o755, exist_ok=True)
        open(dst, "a").close()
    _mount(f"/proc/self/fd/{fd}", dst, None, MS_BIND | MS_REC)
    if readonly:  # a bind mount takes the flags of its source until remounted
        _mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID)
    os.close(fd)


def _readable_in_scratch():
    """What an episode's private /tmp would hide: data directories, and the interpreter and the
    project themselves when they live under /tmp (a checkout in /tmp)."""
    named = [os.path.normpath(p) for p in CFG.get("readable", ())] + _NEEDED
    return sorted({p for p in named if any(_under(p, d) for d in SCRATCH)})


def _private_scratch():
    """This episode's own mount namespace with one fresh EPISODE_FILES_BYTES tmpfs bound at every
    writable place. Data directories that live under /tmp are bound back in."""
    _libc_call("unshare", CLONE_NEWNS)
    # Opened in the new namespace: a mount of another namespace cannot be bound.
    keep = {p: os.open(p, os.O_PATH) for p in _readable_in_scratch() if os.path.exists(p)}
    # nr_inodes: empty files cost kernel memory that the size quota does not count
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV,
           f"mode=1777,size={EPISODE_FILES_BYTES},nr_inodes=16k")
    for d in SCRATCH[1:]:
        if os.path.isdir(d):
            _mount("/tmp", d, None, MS_BIND)
    for p, fd in keep.items():
        _bind(fd, p)


def start_episode(job):
    """In a child of the zygote: limits, private dir, privilege drop, setup. Returns the reply."""
    global ENV, WORKDIR
    uid = job.get("uid")
    mem = CFG["memory_bytes"]
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES, FILE_BYTES))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead
    if CFG["isolate"]:
        _private_scratch()
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
        _prctl(PR_SET_NO_NEW_PRIVS, 1)  # setuid binaries cannot give root back
        # setuid() made us non-dumpable, which hands /proc/self to root (no /proc/self/fd, ...);
        # only the episode's own uid gains access, and core dumps stay off (RLIMIT_CORE 0).
        _prctl(PR_SET_DUMPABLE, 1)
    os.chdir(WORKDIR)
    os.environ.update(HOME=WORKDIR, TMPDIR=WORKDIR, PWD=WORKDIR)
    builtins.input = _refuse_input
    reply = {"ok": True, "observation": None}
    if job.get("setup"):  # "module:function" -> a dataset.environment.ToolEnvironment
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

def _project_packages():
    """The project's top-level directories that hold Python code (not results, logs, venvs)."""
    root = CFG["project_root"]
    return [os.path.join(root, d) for d in sorted(os.listdir(root))
            if not d.startswith(".") and os.path.isdir(os.path.join(root, d))
            and any(f.endswith(".py") for f in os.listdir(os.path.join(root, d)))]


def _needed_paths():
    """Directories the sandboxed Python must be able to read: interpreter, libraries, project."""
    paths = [sys.base_prefix, sys.prefix, sys.base_exec_prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable))] + sys.path + _project_packages()
    if CFG["isolate"]:
        paths += [d for d in SYSTEM_DIRS if not os.path.islink(d)]
    # Each also at the path it is named by, when that runs through a symbolic link (a checkout
    # whose .venv links elsewhere): the interpreter finds its libraries through sys.prefix.
    paths = {q for p in paths if p and os.path.isdir(p) for q in (os.path.realpath(p), os.path.abspath(p))}
    # Data directories keep the path they were named by: task files are named through it, even
    # when it runs through a symbolic link that the private /tmp would hide.
    paths = sorted(paths | {os.path.normpath(p) for p in CFG.get("readable", ())})
    kept = []
    for p in paths:  # sorted, so a parent comes before what is inside it
        if not any(_under(p, k) for k in kept):
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


def _new_root():
    """In our private mount namespace: a fresh root holding, read-only, only what the sandbox
    needs (_needed_paths, SYSTEM_DIRS, ETC_FILES, DEV_NODES), a /proc that shows each uid only
    its own processes, and empty SCRATCH mount points for the episodes' own tmpfs. Then enter it.
    Nothing else of the host's filesystem can be named from inside."""
    _NEEDED[:] = _needed_paths()
    srcs = {p: os.open(p, os.O_PATH) for p in _NEEDED}
    for name in ETC_FILES:
        if os.path.exists("/etc/" + name):
            srcs["/etc/" + name] = os.open("/etc/" + name, os.O_PATH)
    devs = {"/dev/" + n: os.open("/dev/" + n, os.O_PATH) for n in DEV_NODES
            if os.path.exists("/dev/" + n)}
    links = {d: os.readlink(d) for d in SYSTEM_DIRS if os.path.islink(d)}
    new = "/tmp"  # any directory: covered only in this namespace, and moved onto / below
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, ROOT_TMPFS)
    for p, fd in sorted(srcs.items()):
        _bind(fd, new + p)
    for p, fd in devs.items():
        _bind(fd, new + p, readonly=False)  # device nodes: writing /dev/null must work
    for d, target in links.items():
        os.symlink(target, new + d)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{new}/dev/{name}")
    os.makedirs(new + "/proc")
    for opts in ("hidepid=invisible", "hidepid=2"):  # the name needs Linux >= 5.8
        try:
            _mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts)
            break
        except OSError:
            pass
    else:
        raise OSError("cannot mount a private /proc")
    for d in SCRATCH:
        os.makedirs(new + d, mode=0o755, exist_ok=True)
    os.chdir(new)
    _mount(new, "/", None, MS_MOVE)
    os.chroot(".")  # unprivileged episode processes cannot leave it (no CAP_SYS_CHROOT)
    os.chdir("/")


def _procs():
    """pid -> (parent pid, session id, uid) of every live (non-zombie) process we can see."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    state, ppid, _, sid = f.read().rsplit(")", 1)[1].split()[:4]
                if state not in "ZX":
                    table[int(name)] = (int(ppid), int(sid), os.stat(f"/proc/{name}").st_uid)
            except (OSError, ValueError):
                pass
    return table


def _reap():
    """Reap our children that died (killed episode processes became zombies here)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _kill_where(pick, rounds=50):
    """SIGKILL every process `pick(pid, table)` selects, again until none is left (a fork bomb
    races each pass) or `rounds` passes. Returns how many were signalled."""
    import time
    n = 0
    for _ in range(rounds):
        table = _procs()
        hit = [p for p in table if p != os.getpid() and pick(p, table)]
        if not hit:
            break
        for p in hit:
            try:
                os.kill(p, signal.SIGKILL)
                n += 1
            except OSError:
                pass
        time.sleep(0.005)
        _reap()
    return n


def _descends(pid, top, table):
    while pid in table and pid > 1:
        if pid == top:
            return True
        pid = table[pid][0]
    return False


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
    _reap()  # episode processes that died meanwhile became zombies


def _end_episode(msg):
    """Every process of one episode dies: all of its uid when it has one (nothing can leave a
    uid), and all of its session (the episode root's pid: never reused while the session lives).
    Without namespaces its files are a host directory: removed."""
    uid, sid = msg.get("uid"), msg.get("sid")
    if uid is not None:
        _kill_uid(uid)
    # Also waits until they are dead (zombies at most), so the episode's tmpfs is freed now.
    _kill_where(lambda p, t: t[p][2] == uid or t[p][1] == sid)
    if not CFG["isolate"] and msg.get("name"):
        import shutil
        shutil.rmtree(os.path.join(CFG["work_root"], msg["name"]), ignore_errors=True)


def _wait_gone(uids, wait=2.0):
    """SIGKILLed processes exit asynchronously; stay (and reap, as subreaper) until they have."""
    import time
    end = time.monotonic() + wait
    while uids and time.monotonic() < end:
        if not any(u in uids for _, _, u in _procs().values()):
            return
        time.sleep(0.02)
        _reap()


def serve(conn, zygote):
    """The parked loop. Returns never; the process exits when the host closes the socket."""
    uids = set()
    while True:
        msg, fds = recv(conn)
        if msg is None:
            if zygote:  # the pool closed: every sandbox process is below us (we are subreaper)
                for uid in uids:
                    _kill_uid(uid)
                me = os.getpid()
                _kill_where(lambda p, t: _descends(p, me, t))
                _wait_gone(uids)
            os._exit(0)
        op = msg.get("op")
        if op == "fork" and fds:
            try:
                pid = os.fork()
            except OSError as exc:
                os.close(fds[0])
                send(conn, {"error": f"fork failed: {exc}", "eagain": exc.errno == 11})
                continue
            if pid == 0:
                conn.close()  # the host must see EOF on it when this parent dies
                for fd in fds[1:]:
                    os.close(fd)
                conn = socket.socket(fileno=fds[0])
                if zygote:
                    os.setsid()  # the episode's session: how _end_episode finds its processes
                else:
                    os.setpgid(0, 0)
                job, _ = recv(conn)
                if job is None:
                    os._exit(0)
                if zygote:
                    zygote = False
                    uids = set()
                    try:
                        reply = start_episode(job)
                    except BaseException as exc:  # e.g. a mount failed: say so, not just "died"
                        reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    send(conn, reply)
                    if not reply["ok"]:
                        os._exit(1)
                else:
                    reply = run_step(job)
                    send(conn, reply)
                    if "rejected" in reply:
                        os._exit(1)
                continue
            for fd in fds:
                os.close(fd)
            if not zygote:
                try:
                    os.setpgid(pid, pid)  # also done by the child; whichever runs first wins
                except OSError:
                    pass
            if zygote and msg.get("uid") is not None:
                uids.add(msg["uid"])
            send(conn, {"pid": pid})
        elif op == "end" and zygote:
            _end_episode(msg)
            uids.discard(msg.get("uid"))
            send(conn, {"ok": True})
        elif op == "reclaim" and zygote:
            # A flood hit the episode's process limit: stop all its processes but its states.
            keep = set(msg.get("keep") or ())
            n = _kill_where(lambda p, t: t[p][2] == msg["uid"] and p not in keep)
            send(conn, {"stopped": n})
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
            _new_root()
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
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphaned sandbox processes are reaped here
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
