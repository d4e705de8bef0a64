"""Tests of densepolicy.sandbox with real processes (no mocks). Coroutines run via asyncio.run."""
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from densepolicy import sandbox
from densepolicy.sandbox import PROJECT_ROOT, SandboxPool

ENV = "tests.sandbox_env_fixture:make"


def arun(coro):
    return asyncio.run(coro)


def test_state_branching_echo_and_errors():
    async def main():
        async with SandboxPool() as pool:
            root, info = await pool.new_episode()
            assert info == {}
            s1, r = await pool.run(root, "x = 2\ndef double(v):\n    return 2 * v\nprint('hi')")
            assert r.output == "hi\n" and not r.timed_out and not r.crashed and r.status is None
            # Two children of one snapshot diverge; the parent is unchanged.
            a, ra = await pool.run(s1, "x += 10\nx")
            b, rb = await pool.run(s1, "x = double(x) * 100\nx")
            assert (ra.output, rb.output) == ("12\n", "400\n")
            assert (await pool.run(s1, "x"))[1].output == "2\n"
            assert (await pool.run(a, "x"))[1].output == "12\n"
            assert (await pool.run(b, "x"))[1].output == "400\n"
            # Echo only the last expression, never None; interleaved prints keep their order.
            assert (await pool.run(s1, "x + 1\nprint('p')\nx * 3"))[1].output == "p\n6\n"
            assert (await pool.run(s1, "None"))[1].output == ""
            assert (await pool.run(s1, "'s'"))[1].output == "'s'\n"
            # Exceptions: a REPL traceback without sandbox internals; the state is kept.
            s2, r = await pool.run(s1, "y = 1\ndouble(None + 1)")
            assert r.output.startswith("Traceback (most recent call last):\n  File \"<stdin>\"")
            assert r.output.rstrip().endswith("TypeError: unsupported operand type(s) for +: "
                                              "'NoneType' and 'int'")
            assert "sandbox" not in r.output
            assert (await pool.run(s2, "y"))[1].output == "1\n"
            r = (await pool.run(s1, "def f(:"))[1]
            assert "SyntaxError" in r.output and "sandbox" not in r.output
            # stderr and subprocess output are captured too, in order.
            r = (await pool.run(s1, "import sys, subprocess\nprint('a')\nsys.stderr.write('b\\n')\n"
                                    "subprocess.run(['echo', 'c'])\nprint('d')"))[1]
            assert r.output == "a\nb\nc\nd\n"
    arun(main())


def test_refusals_keep_state():
    async def main():
        async with SandboxPool(timeout=3) as pool:
            root, _ = await pool.new_episode()
            s, _ = await pool.run(root, "k = 7")
            for code in ("input()", "input('n? ')", "exit()", "quit()", "import sys; sys.exit(3)",
                         "import sys; sys.stdin.read()"):
                t = time.monotonic()
                s2, r = await pool.run(s, "k += 1\n" + code)
                assert time.monotonic() - t < 2 and not r.timed_out and not r.crashed
                if "stdin" not in code:
                    assert "not allowed" in r.output or "not supported" in r.output, r.output
                assert (await pool.run(s2, "k"))[1].output == "8\n"
    arun(main())


def test_truncation():
    async def main():
        async with SandboxPool(output_limit=100) as pool:
            root, _ = await pool.new_episode()
            t = time.monotonic()
            s, r = await pool.run(root, "print('x' * 10**8)")
            assert time.monotonic() - t < 3
            assert r.output.startswith("x" * 100)
            assert "100000001" not in r.output and "99999901 more characters" in r.output
            r = (await pool.run(s, "import os\nfor i in range(50): os.system('echo 0123456789')"))[1]
            assert r.output.startswith("0123456789\n" * 9) and "truncated" in r.output
            assert (await pool.run(s, "print('short')"))[1].output == "short\n"
    arun(main())


def test_timeout_and_crash_keep_parent_state():
    async def main():
        async with SandboxPool(timeout=1.0) as pool:
            root, _ = await pool.new_episode()
            s, _ = await pool.run(root, "x = 1")
            t = time.monotonic()
            s2, r = await pool.run(s, "x = 2\nwhile True: pass")
            assert time.monotonic() - t < 3
            assert r.timed_out and not r.crashed and r.output.startswith("TimeoutError")
            assert (await pool.run(s2, "x"))[1].output == "1\n"
            for code in ("import os; os._exit(0)", "import ctypes; ctypes.string_at(0)",
                         "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"):
                s3, r = await pool.run(s, "x = 3\n" + code)
                assert r.crashed and not r.timed_out and "died" in r.output, r.output
                assert (await pool.run(s3, "x"))[1].output == "1\n"
            assert pool.stats["timeouts"] == 1 and pool.stats["crashes"] == 3
    arun(main())


def _host_listener():
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    lst.setblocking(False)
    return lst


def test_hostile_code_leaves_host_untouched():
    tag = uuid.uuid4().hex
    host_files = [f"{PROJECT_ROOT}/x_{tag}", f"/tmp/x_{tag}", f"/var/tmp/x_{tag}", f"/dev/shm/x_{tag}"]
    lst = _host_listener()
    port = lst.getsockname()[1]
    hostile = {
        "infinite loop": "while True: pass",
        "memory bomb": "a = []\nwhile True: a.append(bytearray(10**8))",
        "fork bomb": "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass",
        "print 100 MB": "print('x' * 10**8)\nfor _ in range(10**5): print('y' * 1000)",
        "write 100 MB": "open('big', 'w').write('z' * 10**8)",
        "write outside": "".join(f"try: open({p!r}, 'w').write('x')\nexcept OSError as e: print(e)\n"
                                 for p in host_files),
        "kill parent": "import os; os.kill(os.getppid(), 9)",
        "kill all": "import os; os.kill(-1, 9)",
        "input": "input()",
        "exit": "exit()",
        "segfault": "import ctypes; ctypes.string_at(0)",
        "tcp to host": f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1)",
        "escape group": "import os, time\nif os.fork() == 0:\n    os.setsid(); time.sleep(60)\n"
                        "while True: pass",
    }

    async def main():
        async with SandboxPool(timeout=2.0) as pool:
            if not (pool.isolated and pool.drop_privileges):
                pytest.skip("needs root and unshare (namespaces + episode uids)")
            root, _ = await pool.new_episode()
            s, _ = await pool.run(root, "x = 41")
            for name, code in hostile.items():
                t = time.monotonic()
                s2, r = await pool.run(s, code)
                assert time.monotonic() - t < 6, name
                assert len(r.output) < 2200, name
                if name == "tcp to host":
                    assert "unreachable" in r.output or "refused" in r.output, r.output
                if name == "write outside":
                    assert r.output.count("ermission denied") == 1, r.output  # the project, read-only
                # The same episode still works, from the hostile step's result and its parent;
                # a flood left behind by the hostile step may be reported once, then stopped.
                for state in (s2, s):
                    out = (await pool.run(state, "x + 1"))[1].output
                    if out.startswith("[Note:"):
                        note, _, out = out.partition("]\n")
                        assert "limit of processes" in note, (name, note)
                    assert out == "42\n", (name, out)
            assert pool.stats["replays"] >= 1  # the killed parent was rebuilt
            uids = set(pool._uids)
        return uids

    uids = arun(main())
    for p in host_files:
        assert not os.path.exists(p), p
    with pytest.raises(BlockingIOError):
        lst.accept()  # no connection ever reached the host listener
    lst.close()
    assert _procs_of(uids) == [], "close() left processes behind"


def _procs_of(uids):
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid not in uids:
                    continue
                with open(f"/proc/{pid}/stat") as f:
                    state = f.read().rsplit(")", 1)[-1].split()[0]
            except OSError:
                continue
            if state != "Z":  # a zombie holds nothing; reaping it is up to init
                left.append(f"{pid} ({state})")
    return left


def test_eviction_and_replay_rebuild_same_state():
    async def main():
        async with SandboxPool(max_snapshots=3, timeout=0.5) as pool:
            root, _ = await pool.new_episode()
            snaps, s = [], root
            for i in range(8):
                s, r = await pool.run(s, f"acc = (globals().get('acc') or []) + [{i} * {i}]\nacc[-1]")
                assert r.output == f"{i * i}\n"
                snaps.append(s)
            assert pool.stats["evictions"] > 0 and pool.stats["live"] <= 3
            assert (await pool.run(snaps[2], "acc"))[1].output == "[0, 1, 4]\n"
            assert pool.stats["replays"] > 0
            pool.release(snaps[7])
            pool.release(root)
            assert (await pool.run(snaps[7], "sum(acc)"))[1].output == f"{sum(i * i for i in range(8))}\n"
            # A timed-out step shares its parent's state, also once that must be rebuilt.
            same, r = await pool.run(snaps[1], "acc.append(9)\nwhile True: pass")
            assert r.timed_out
            pool.release(snaps[1])
            pool.release(snaps[0])
            assert (await pool.run(same, "acc"))[1].output == "[0, 1]\n"
    arun(main())


def test_many_concurrent_episodes():
    async def episode(pool, i):
        s, _ = await pool.new_episode()
        s, _ = await pool.run(s, f"n = {i}")
        kids = await asyncio.gather(*(pool.run(s, f"n * {k}") for k in range(3)))
        return [r.output for _, r in kids]

    async def main():
        async with SandboxPool() as pool:
            t = time.monotonic()
            outs = await asyncio.gather(*(episode(pool, i) for i in range(50)))
            assert outs == [[f"{i * k}\n" for k in range(3)] for i in range(50)]
            assert time.monotonic() - t < 20
            assert pool.stats["episodes"] == 50
    arun(main())


def test_setup_env_tools_and_status():
    async def main():
        async with SandboxPool() as pool:
            root, info = await pool.new_episode(ENV, {"start": 1, "goal": 3})
            assert info == {"observation": "The counter is at 1; bring it to 3."}
            s, r = await pool.run(root, "increment()")
            assert r.output == "The counter is now 2.\n"
            assert r.status == {"success": False, "done": False}
            win, r = await pool.run(s, "increment()\nget_count()")
            assert r.output == "The counter is now 3.\n3\n" and r.status["success"] is True
            over, r = await pool.run(s, "increment(5)")
            assert r.status == {"success": False, "done": True}
            assert (await pool.run(s, "get_count()"))[1].output == "2\n"  # branches independent
            # Replay from scratch re-runs the setup with the same arguments.
            for snap in (root, s, win):
                pool.release(snap)
            _, r = await pool.run(win, "get_count()")
            assert r.output == "3\n" and r.status["success"] is True
            with pytest.raises(RuntimeError, match="this setup always fails"):
                await pool.new_episode("tests.sandbox_env_fixture:broken")
            with pytest.raises(TypeError):
                await pool.new_episode(ENV, {"start": object()})
    arun(main())


def test_readable_data_dirs_under_tmp_stay_visible(tmp_path):
    # The sandbox's private /tmp hides the host's /tmp; a data directory named there (here through
    # a symbolic link, as a CI checkout with shared/ beside it may be) is bound back at its path.
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "game.txt").write_text("the game")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    path = tmp_path / "link" / "game.txt"

    async def go():
        async with SandboxPool(readable=(str(tmp_path / "link"),)) as pool:
            snap, _ = await pool.new_episode()
            _, seen = await pool.run(snap, f"print(open({str(path)!r}).read())")
            _, written = await pool.run(snap, f"open({str(tmp_path / 'link' / 'x')!r}, 'w')")
            return seen, written

    seen, written = asyncio.run(go())
    assert seen.output == "the game\n"
    assert "Error" in written.output and not (tmp_path / "real" / "x").exists()


def test_a_checkout_under_tmp_with_a_linked_venv_stays_isolated(tmp_path):
    """A checkout in /tmp (a worktree, say) whose .venv links to another one: the episodes still
    see the project's packages and the interpreter's libraries, by the paths they are named by."""
    for package in ("densepolicy", "dataset", "agents"):
        shutil.copytree(PROJECT_ROOT / package, tmp_path / package)
    venv = Path(sys.prefix)
    (tmp_path / ".venv").symlink_to(venv)
    python = tmp_path / ".venv" / "bin" / Path(sys.executable).name
    code = ("import asyncio, densepolicy\n"
            "from densepolicy.sandbox import SandboxPool, PROJECT_ROOT\n"
            "async def main():\n"
            "    async with SandboxPool(preload=('minigrid',)) as pool:\n"
            "        root, _ = await pool.new_episode()\n"
            "        _, r = await pool.run(root, 'import minigrid, densepolicy, sys; print(densepolicy.__file__, sys.prefix)')\n"
            "        print(pool.isolated, pool.drop_privileges, PROJECT_ROOT, r.output)\n"
            "asyncio.run(main())\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    want = "True True" if _can_isolate() else "False"
    assert r.stdout.startswith(want) and "warning" not in r.stderr, (r.stdout, r.stderr)
    assert f" {tmp_path} {tmp_path}/densepolicy/__init__.py {tmp_path}/.venv\n" in r.stdout, r.stdout


# ---- hardening (issue 14): secrets, lifetime, file quota, floods, file view ----

from densepolicy.sandbox import _can_isolate  # noqa: E402
from densepolicy.sandbox_worker import EPISODE_FILES_BYTES  # noqa: E402

# A grandchild that leaves the step's process group and session (setsid, double fork) and
# sleeps; the step prints its pid.
DETACH = ("import os, time\nr, w = os.pipe()\nif os.fork() == 0:\n    os.setsid()\n"
          "    if os.fork() == 0:\n        os.write(w, str(os.getpid()).encode())\n"
          "        time.sleep(600)\n    os._exit(0)\nos.close(w)\nprint(int(os.read(r, 32)))")


def _need_isolation(pool):
    """Skip where the isolated mode cannot exist here; where it can, it must be in effect."""
    if not _can_isolate():
        pytest.skip("needs Linux, root and `unshare` (mount namespaces and episode uids)")
    assert pool.isolated and pool.drop_privileges, "isolation possible here but not in effect"


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def test_host_secret_never_visible(monkeypatch):
    marker = "densepolicy_marker_" + uuid.uuid4().hex
    monkeypatch.setenv("DENSEPOLICY_TEST_SECRET", marker)
    monkeypatch.setenv("HF_TOKEN", marker)
    probes = ["import os; print(dict(os.environ))",
              "print(open('/proc/self/environ', 'rb').read())",
              "import subprocess as s; print(s.run(['env'], capture_output=True, text=True).stdout)",
              "import os; print(os.popen('cat /proc/$$/environ; env').read())"]

    async def main():
        async with SandboxPool() as pool:
            root, _ = await pool.new_episode(ENV, {"start": 1})
            s, _ = await pool.run(root, "increment()")
            return [(await pool.run(snap, code))[1].output for code in probes for snap in (root, s)]

    outs = arun(main())
    for out in outs:
        assert "PATH" in out, out  # the probe did print an environment
        assert marker not in out and "DENSEPOLICY_TEST_SECRET" not in out and "HF_TOKEN" not in out


def test_no_process_outlives_its_episode():
    async def main():
        async with SandboxPool(timeout=3.0) as pool:
            _need_isolation(pool)
            # Released: detached children of a state, of a child state and of the parent again.
            root, _ = await pool.new_episode()
            s1, r1 = await pool.run(root, DETACH)
            s2, r2 = await pool.run(s1, DETACH)
            s3, r3 = await pool.run(root, DETACH)
            released = [int(r.output) for r in (r1, r2, r3)]
            assert all(_running(p) for p in released)
            for snap in (s3, s1):
                pool.release(snap)
            await pool.settle()
            assert all(_running(p) for p in released), "ended while a state was still live"
            for snap in (root, s2):
                pool.release(snap)
            await pool.settle()
            left = [p for p in released if _running(p)]
            assert not left, f"still running after the last release: {left}"
            # Dropped without release: the garbage collector's finalizer ends the episode.
            root, _ = await pool.new_episode()
            s, r = await pool.run(root, DETACH)
            dropped = int(r.output)
            del root, s
            import gc
            gc.collect()
            await pool.settle()
            assert not _running(dropped)
            # Still live when the pool closes.
            root, _ = await pool.new_episode()
            _, r = await pool.run(root, DETACH)
            return int(r.output)

    at_close = arun(main())
    assert not _running(at_close)


def test_episode_end_without_namespaces_kills_its_session_and_files():
    # The fallback (no root / no unshare) still ends what did not detach, and removes the files.
    plain = "import os, subprocess; print(subprocess.Popen(['sleep', '600']).pid, os.getcwd())"

    async def main():
        async with SandboxPool(isolate=False) as pool:
            root, _ = await pool.new_episode()
            s, r = await pool.run(root, plain)
            pid, workdir = r.output.split()
            assert _running(pid) and os.path.isdir(workdir)
            pool.release(root)
            pool.release(s)
            await pool.settle()
            assert not _running(pid) and not os.path.exists(workdir)  # before close()
    arun(main())


def test_a_setup_that_hangs_is_retried_in_a_fresh_episode(monkeypatch, capfd):
    """A hung setup must not reach the model as its action's outcome: one fresh try, and the log
    says where the hung one waited."""
    monkeypatch.setattr(sandbox, "SETUP_TIMEOUT", 3.0)
    shared = tempfile.mkdtemp(prefix="densepolicy-test-", dir="/tmp")  # episode uids write here
    os.chmod(shared, 0o777)
    marker = os.path.join(shared, "hung-once")

    async def main():
        async with SandboxPool(isolate=False) as pool:
            t0 = time.monotonic()
            root, info = await pool.new_episode("tests.sandbox_env_fixture:hang_once", {"marker": marker})
            assert 3.0 <= time.monotonic() - t0 < 30
            assert info["observation"] == "The counter is at 0; bring it to 3."
            assert pool.stats["setup_timeouts"] == 1 and pool.stats["episodes"] == 2
            _, r = await pool.run(root, "increment(); get_count()")
            assert r.output.strip().endswith("1")
            # A setup that always hangs: both tries fail, and the error says so.
            with pytest.raises(RuntimeError, match="setup 'tests.sandbox_env_fixture:hang_once' failed: timed out"):
                await pool.new_episode("tests.sandbox_env_fixture:hang_once")
            assert pool.stats["setup_timeouts"] == 3 and pool.stats["episodes"] == 4
            # A state whose rebuild needs a set-up that hangs: the step fails as the sandbox's
            # error, flagged so, not as the outcome of the code.
            flag = os.path.join(shared, "hang")
            root, _ = await pool.new_episode("tests.sandbox_env_fixture:hang_while", {"flag": flag})
            step, r = await pool.run(root, "increment()")
            assert not r.sandbox_error
            pool.release(step)
            pool.release(root)
            open(flag, "w").close()
            _, r = await pool.run(step, "get_count()")
            assert r.sandbox_error and r.crashed and r.output.startswith("SandboxError: "), r
            assert pool.stats["setup_timeouts"] == 5
            os.unlink(flag)
            _, r = await pool.run(step, "get_count()")  # the same state, rebuilt once it can be
            assert not r.sandbox_error and r.output.strip() == "1", r
    try:
        arun(main())
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    err = capfd.readouterr().err
    assert "gave no reply within 3 s (pid " in err and "state S, waiting in " in err
    assert err.count("trying a fresh episode") == 3 and err.count("giving up") == 2


def test_episode_files_quota_and_cleanup():
    assert EPISODE_FILES_BYTES == 64 << 20
    fill = ("import os\nfor i, d in enumerate(['/tmp', '/var/tmp', '/dev/shm', '.', '.']):\n"
            "    with open(os.path.join(d, f'f{i}'), 'wb') as f:\n"
            "        f.write(b'x' * (15 << 20))\n    print('wrote', i)")

    async def main():
        async with SandboxPool(timeout=5.0) as pool:
            _need_isolation(pool)
            root, _ = await pool.new_episode()
            s, r = await pool.run(root, fill)
            assert r.output.count("wrote") == 4, r.output  # 4 x 15 MiB fit, the 5th does not
            assert "No space left on device" in r.output and "64 MiB in total" in r.output
            # The episode's states share its files; another episode does not see them.
            _, r = await pool.run(root, "import os; sorted(os.listdir('/tmp'))")
            assert "'f0'" in r.output
            other, _ = await pool.new_episode()
            _, r = await pool.run(other, "import os; os.listdir('/tmp'), os.listdir('/dev/shm')")
            assert "f0" not in r.output and "f2" not in r.output
            _, r = await pool.run(s, "import os; os.readlink('/proc/self/ns/mnt')")
            ns = r.output.strip().strip("'")
            assert ns.startswith("mnt:[")
            # The tmpfs lives as long as a process of its mount namespace: none once it ended.
            for snap in (root, s):
                pool.release(snap)
            await pool.settle()
            holders = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    if os.readlink(f"/proc/{pid}/ns/mnt") == ns and _running(pid):
                        holders.append(pid)
                except OSError:
                    pass
            assert not holders, f"the episode's files are still held by {holders}"
    arun(main())


def test_flood_then_next_action_within_timeout():
    threads = ("import threading, time\nfor _ in range(300):\n"
               "    try: threading.Thread(target=time.sleep, args=(300,), daemon=True).start()\n"
               "    except RuntimeError: break\nprint('started')")
    procs = ("import subprocess\nn = 0\nfor _ in range(500):\n"
             "    try: subprocess.Popen(['sleep', '300'], start_new_session=True); n += 1\n"
             "    except OSError: break\nprint('started', n)")

    async def main():
        async with SandboxPool(timeout=3.0) as pool:
            _need_isolation(pool)
            root, _ = await pool.new_episode()
            s, _ = await pool.run(root, "x = 41")
            flooded, r = await pool.run(s, "x = 0\n" + threads)
            assert "threads running" in r.output and "stopped" in r.output, r.output
            for snap in (flooded, s):
                t = time.monotonic()
                _, r = await pool.run(snap, "x + 1")
                assert r.output == "42\n" and time.monotonic() - t < 3.0
            # Detached sleepers fill the episode's process limit; the next fork stops them.
            flooded, r = await pool.run(s, procs)
            assert r.output.startswith("started"), r.output
            outs = []
            for snap in (flooded, s):
                t = time.monotonic()
                _, r = await pool.run(snap, "x + 1")
                outs.append(r.output)
                assert r.output.endswith("42\n") and time.monotonic() - t < 3.0, r.output
            assert "processes left running by earlier actions were stopped" in outs[0], outs
            assert outs[1] == "42\n"
    arun(main())


def test_file_view_hides_host_files_and_protects_project():
    tag = uuid.uuid4().hex
    outside = PROJECT_ROOT / f".sandbox_probe_{tag}"  # world-readable, outside every mount
    outside.write_text("host only")
    os.chmod(outside, 0o644)
    project_file = PROJECT_ROOT / "densepolicy" / "sandbox.py"
    before = project_file.read_bytes()
    data_dir = os.environ.get("DATA_DIR") or str(PROJECT_ROOT.parent / "shared" / "data")
    cases = {
        "outside": f"open({str(outside)!r}).read()",
        "readme": f"open({str(PROJECT_ROOT / 'README.md')!r}).read()",
        "etc": "open('/etc/hostname').read()",
        "host pid": f"import os; os.path.exists('/proc/{os.getpid()}')",
        "write project": f"open({str(project_file)!r}, 'a').write('# x')",
        "new project file": f"open({str(PROJECT_ROOT / 'densepolicy' / tag)!r}, 'w')",
        "read project": f"open({str(project_file)!r}).read(3)",
        "project read-only": f"import os; os.statvfs({str(project_file)!r}).f_flag & os.ST_RDONLY",
        "data dir": f"import os; os.path.isdir({data_dir!r})",
    }

    async def main():
        async with SandboxPool() as pool:
            _need_isolation(pool)
            root, _ = await pool.new_episode()
            return {k: (await pool.run(root, c))[1].output for k, c in cases.items()}

    try:
        outs = arun(main())
    finally:
        outside.unlink()
    for k in ("outside", "readme", "etc"):
        assert "FileNotFoundError" in outs[k], (k, outs[k])
    assert outs["host pid"] == "False\n"
    assert "PermissionError" in outs["write project"]  # the uid is checked first, then the mount
    assert "Read-only file system" in outs["new project file"]
    assert outs["project read-only"] == f"{os.ST_RDONLY}\n"
    assert outs["read project"] == "'\"\"\"'\n"
    assert outs["data dir"] == ("True\n" if os.path.isdir(data_dir) else "False\n")
    assert project_file.read_bytes() == before
    assert not (PROJECT_ROOT / "densepolicy" / tag).exists()
