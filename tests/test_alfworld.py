"""ALFWorld tools: task listing, bad input, the expert oracle on every valid_unseen game, invalid
actions, branching by os.fork, and (when present) episodes through the sandbox pool."""
import asyncio
import collections
import contextlib
import io
import json
import multiprocessing
import os
import re
import subprocess
import sys

import pytest

from densepolicy.paths import ROOT

from dataset import alfworld
from dataset.alfworld import DataError, load_tasks, make_env

HAVE_DATA = os.path.isdir(os.path.join(alfworld.alfworld_dir(), "json_2.1.1", "valid_unseen"))
needs_data = pytest.mark.skipif(not HAVE_DATA, reason="ALFWorld game files not found")
needs_engine = pytest.mark.skipif(
    not HAVE_DATA or __import__("importlib.util").util.find_spec("textworld") is None,
    reason="textworld/alfworld not installed or no game files")

# ---- the expert walkthrough as tool calls (the oracle below) ----

_WALK = [(re.compile(p), t) for p, t in [
    (r"go to (.+)", "goto({0!r})"), (r"take (.+) from (.+)", "take({0!r}, {1!r})"),
    (r"move (.+) to (.+)", "put({0!r}, {1!r})"), (r"put (.+) into? (.+)", "put({0!r}, {1!r})"),
    (r"open (.+)", "open({0!r})"), (r"close (.+)", "close({0!r})"),
    (r"clean (.+) with (.+)", "clean({0!r}, {1!r})"), (r"cool (.+) with (.+)", "cool({0!r}, {1!r})"),
    (r"heat (.+) with (.+)", "heat({0!r}, {1!r})"), (r"use (.+)", "use({0!r})"),
    (r"examine (.+)", "examine({0!r})"), (r"inventory", "inventory()")]]


def walkthrough_code(task: dict) -> list[str]:
    """The game's stored expert plan, one tool call (a line of Python) per command."""
    out = []
    for cmd in json.load(open(task["task_file"]))["walkthrough"]:
        for pat, tmpl in _WALK:
            if m := pat.fullmatch(cmd):
                out.append(tmpl.format(*m.groups()))
                break
        else:
            raise ValueError(f"walkthrough command with no tool: {cmd!r}")
    return out


COUNTS = {"put": 24, "clean": 31, "heat": 23, "cool": 21, "examine": 18, "puttwo": 17}


def run_code(env, code: str) -> str:
    """What a tool call prints, as the sandbox would capture it."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, dict(env.tools))
    return buf.getvalue()


# ---- listing and bad input ----

@needs_data
def test_load_tasks_valid_unseen():
    tasks = load_tasks("alfworld", "valid_unseen")
    assert len(tasks) == 134
    assert dict(collections.Counter(t["task_type"] for t in tasks)) == COUNTS
    assert [t["index"] for t in tasks] == list(range(134))
    assert load_tasks("alfworld", "test") == tasks
    json.dumps(tasks)  # crosses the sandbox boundary as setup_kwargs
    t = tasks[0]
    assert set(t) == {"index", "input", "target", "task_file", "task_type"}
    assert t["input"].endswith(".") and "Your task" not in t["input"] and t["target"] == ""
    for short, n in COUNTS.items():
        sub = load_tasks(f"alfworld_{short}", "valid_unseen")
        assert len(sub) == n and {t["task_type"] for t in sub} == {short}
        assert [t["index"] for t in sub] == list(range(n))


@needs_data
def test_other_splits():
    assert len(load_tasks("alfworld", "train")) == 300
    assert len(load_tasks("alfworld", "valid_seen")) == 140
    assert len(load_tasks("alfworld_put", "train")) == 50


def test_bad_input(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="expected one of"):
        load_tasks("alfworld_slice", "train")
    with pytest.raises(DataError, match="split"):
        load_tasks("alfworld", "dev", data_dir=str(tmp_path))
    with pytest.raises(DataError, match="no ALFWorld games at .*json_2.1.1"):
        load_tasks("alfworld", "train", data_dir=str(tmp_path))               # empty
    with pytest.raises(DataError, match="no ALFWorld games"):
        load_tasks("alfworld", "train", data_dir=str(tmp_path / "missing"))   # missing
    (tmp_path / "alfworld" / "json_2.1.1" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no ALFWorld games"):
        load_tasks("alfworld", "train", data_dir=str(tmp_path))               # empty split
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="nowhere"):
        load_tasks("alfworld", "valid_unseen")
    assert DataError.__module__ == "dataset"  # the project's one DataError


@needs_data
def test_data_dir_resolution(monkeypatch):
    shared = str(ROOT.parent / "shared" / "data")
    for var in ("ALFWORLD_DATA", "DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    n = len(load_tasks("alfworld", "valid_unseen"))
    assert len(load_tasks("alfworld", "valid_unseen", data_dir=shared)) == n
    assert len(load_tasks("alfworld", "valid_unseen", data_dir=shared + "/alfworld")) == n
    monkeypatch.setenv("DATA_DIR", shared)
    assert len(load_tasks("alfworld", "valid_unseen")) == n
    monkeypatch.setenv("ALFWORLD_DATA", shared + "/alfworld")
    monkeypatch.setenv("DATA_DIR", "/nonexistent")
    assert len(load_tasks("alfworld", "valid_unseen")) == n


def test_imports_without_engine():
    """The host imports this module (TOOLS_DOC, load_tasks) without textworld installed."""
    code = ("import sys; sys.modules['textworld'] = None; sys.modules['alfworld'] = None\n"
            "from dataset import alfworld\n"
            "assert 'goto(recep)' in alfworld.TOOLS_DOC\n"
            "info = alfworld.dataset_info('alfworld_heat')\n"
            "assert info['setup'] == 'dataset.alfworld:make_env' and info['kind'] == 'tool'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---- the oracle: every valid_unseen expert plan, through our tools, wins ----

def _play_walkthrough(task):
    env = make_env(task)
    outs = [run_code(env, line) for line in walkthrough_code(task)]
    invalid = [o for o in outs if "not valid" in o]
    return task["task_type"], env.status(), len(outs), invalid


@needs_engine
def test_oracle_valid_unseen():
    tasks = load_tasks("alfworld", "valid_unseen")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.map(_play_walkthrough, tasks, chunksize=4)
    lost = [(t["task_file"], r) for t, r in zip(tasks, results) if not r[1]["success"]]
    assert not lost, lost
    assert all(r[1] == {"success": True, "done": True} and not r[3] for r in results)
    assert dict(collections.Counter(r[0] for r in results)) == COUNTS


# ---- observations ----

@needs_engine
def test_observations_and_invalid_actions():
    task = next(t for t in load_tasks("alfworld_examine", "valid_unseen"))
    env = make_env(task)
    assert env.initial_observation.startswith("You are in the middle of a room.")
    assert "Your task" not in env.initial_observation and env.goal == task["input"]
    assert set(env.tools) == {"goto", "take", "put", "open", "close", "toggle", "clean", "cool",
                              "heat", "inventory", "examine", "use"}
    assert env.status() == {"success": False, "done": False}
    from dataset.environment import ToolEnvironment
    assert isinstance(env, ToolEnvironment)

    out = run_code(env, "goto('spaceship 1')")
    assert out.startswith("This action is not valid: go to spaceship 1.")
    assert 'There is no "spaceship 1"' in out and "Receptacles in this room:" in out
    assert "Traceback" not in out
    out = run_code(env, "take('unicorn 7', 'desk 1')")
    assert 'no "unicorn 7"' in out and "Traceback" not in out
    out = run_code(env, "inventory()")
    assert out.strip() == "You are not carrying anything."
    # a valid name, but an action the engine rejects here
    out = run_code(env, "heat('desk 1', 'desk 1')")
    assert out.strip() == "This action is not valid: heat desk 1 with desk 1."
    # names are normalised to the engine's spelling; a repeated goto says where you are
    first = walkthrough_code(task)[0]                 # goto('desk 2') or similar
    recep = first[len("goto('"):-2]
    out = run_code(env, f"goto({recep.replace(' ', '').upper()!r})")
    assert out.startswith(f"You arrive at {recep}.")
    assert "already at" in run_code(env, first)
    # tools return None: the sandbox echoes a non-None value of the last expression
    with contextlib.redirect_stdout(io.StringIO()):
        assert env.tools["inventory"]() is None


@needs_engine
def test_toggle_is_use():
    """toggle(x) sends ALFWorld's "use x": an examine game won with toggle instead of use."""
    task = load_tasks("alfworld_examine", "valid_unseen")[0]
    env = make_env(task)
    for line in walkthrough_code(task):
        run_code(env, line.replace("use(", "toggle("))
    assert env.status()["success"]


# ---- branching ----

@needs_engine
def test_fork_branches_diverge():
    task = load_tasks("alfworld_put", "valid_unseen")[0]
    env = make_env(task)
    plan = walkthrough_code(task)
    run_code(env, plan[0])
    run_code(env, plan[1])                     # now holding the object
    base = list(env.history)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: finish the plan and report
        try:
            os.close(r)
            for line in plan[2:]:
                run_code(env, line)
            os.write(w, json.dumps({"history": env.history, "status": env.status()}).encode())
        finally:
            os._exit(0)
    os.close(w)
    run_code(env, "inventory()")                # parent: something else
    child = json.loads(os.read(r, 1 << 20).decode())
    os.waitpid(pid, 0)
    assert child["status"]["success"] and not env.status()["success"]
    assert [tuple(h) for h in child["history"][:2]] == base == env.history[:2]
    assert len(child["history"]) == len(plan) and env.history[2][0] == "inventory"
    for line in plan[2:]:                       # the parent's state is intact and still plays
        run_code(env, line)
    assert env.status()["success"]


# ---- through the sandbox pool (colleague's densepolicy/sandbox.py) ----

def _pool():
    sandbox = pytest.importorskip("densepolicy.sandbox")
    return sandbox.SandboxPool(timeout=30.0, preload=alfworld.dataset_info("alfworld")["preload"])


@needs_engine
def test_sandbox_walkthrough():
    task = load_tasks("alfworld_heat", "valid_unseen")[0]
    plan = walkthrough_code(task)

    async def go():
        async with _pool() as pool:
            snap, info = await pool.new_episode(setup="dataset.alfworld:make_env",
                                                setup_kwargs={"task": task})
            assert info["observation"].startswith("You are in the middle of a room.")
            # half the plan in one action, the rest line by line
            snap, res = await pool.run(snap, "\n".join(plan[:3]))
            assert res.output.count("\n") >= 2 and res.status == {"success": False, "done": False}
            for line in plan[3:]:
                snap, res = await pool.run(snap, line)
                assert "not valid" not in res.output and "Traceback" not in res.output, res.output
            return res
    res = asyncio.run(go())
    assert res.status == {"success": True, "done": True}


@needs_engine
def test_sandbox_siblings():
    task = load_tasks("alfworld_put", "valid_unseen")[0]
    plan = walkthrough_code(task)

    async def go():
        async with _pool() as pool:
            snap, _ = await pool.new_episode(setup="dataset.alfworld:make_env",
                                             setup_kwargs={"task": task})
            snap, _ = await pool.run(snap, "\n".join(plan[:2]))
            win, lose = await asyncio.gather(pool.run(snap, "\n".join(plan[2:])),
                                             pool.run(snap, "inventory()"))
            again = await pool.run(snap, "inventory()")   # the shared parent is unchanged
            return win[1], lose[1], again[1]
    win, lose, again = asyncio.run(go())
    assert win.status["success"] and not lose.status["success"]
    assert lose.output == again.output and lose.output.startswith("You are carrying:")
