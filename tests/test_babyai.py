"""BabyAI tools: task listing and splits, bad input, minigrid's BabyAIBot plan executed through the
text tools (oracle), observations, branching by os.fork, and an episode through the sandbox pool."""
import asyncio
import collections
import contextlib
import importlib.util
import io
import json
import os
import subprocess
import sys

import pytest

from densepolicy.paths import ROOT

from dataset import babyai
from dataset.babyai import LEVELS, DataError, load_tasks, make_env

needs_engine = pytest.mark.skipif(importlib.util.find_spec("minigrid") is None,
                                  reason="minigrid not installed")


def run_code(env, code: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, dict(env.tools))
    return buf.getvalue()


def test_bad_input():
    with pytest.raises(DataError, match="babyai_<level>"):
        load_tasks("babyai_NoSuchLevel", "test")
    with pytest.raises(DataError, match="split"):
        load_tasks("babyai", "valid")
    with pytest.raises(DataError, match="GoToLocal"):
        babyai.dataset_info("babyai_x")


def test_imports_without_engine():
    code = ("import sys; sys.modules['minigrid'] = None; sys.modules['gymnasium'] = None\n"
            "from dataset import babyai\n"
            "assert 'go_to(obj)' in babyai.TOOLS_DOC\n"
            "assert babyai.dataset_info('babyai')['setup'] == 'dataset.babyai:make_env'\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


@needs_engine
def test_splits_disjoint_and_deterministic():
    test, train = load_tasks("babyai", "test"), load_tasks("babyai", "train")
    assert len(test) == len(LEVELS) * len(babyai.TEST_SEEDS) == 11000  # >= 500 held-out seeds a level
    assert len(train) == len(LEVELS) * len(babyai.TRAIN_SEEDS) == 1100
    assert not {t["seed"] for t in test} & {t["seed"] for t in train}
    from agents.prompts import EXAMPLES
    example_seeds = {e["seed"] for e in EXAMPLES["babyai"]}
    assert example_seeds and not example_seeds & ({t["seed"] for t in test} | {t["seed"] for t in train})
    # Missions come from the cache once generated; a fresh generation gives the same ones.
    assert [t["input"] for t in test[:22]] == [babyai._make_gym(t["level"], t["seed"]).unwrapped.mission
                                               for t in test[:22]]
    assert [t["index"] for t in test] == list(range(len(test)))
    assert {t["level"] for t in test[:len(LEVELS)]} == set(LEVELS)  # seed-major: any prefix mixes levels
    json.dumps(test)
    assert set(test[0]) == {"index", "input", "target", "level", "seed"} and test[0]["target"] == ""
    one = load_tasks("babyai_gotolocal", "test")
    assert {t["level"] for t in one} == {"GoToLocal"} and len(one) == len(babyai.TEST_SEEDS)
    assert [t["input"] for t in one] == [t["input"] for t in test if t["level"] == "GoToLocal"]
    env = make_env(one[0])                      # same seed -> same level and mission
    assert env.mission == one[0]["input"] and make_env(one[0]).initial_observation == env.initial_observation
    from dataset.environment import ToolEnvironment
    assert isinstance(env, ToolEnvironment)


# ---- the oracle: BabyAIBot's primitive plan, through our text tools ----

def front_name(env):
    """The name of the object in front of the agent (None: nothing there, or a wall)."""
    o = env.minigrid.grid.get(*env.minigrid.front_pos)
    return getattr(o, "dp_name", None)


def play_bot(task) -> tuple[dict, int]:
    from minigrid.utils.baby_ai_bot import BabyAIBot
    env = make_env(task)
    bot, A = BabyAIBot(env.gym), env.actions
    calls = {A.left: "turn_left()", A.right: "turn_right()", A.forward: "move_forward()",
             A.toggle: "toggle()", A.drop: "drop()"}
    n = 0
    while not env.over and n < 1000:
        a = bot.replan()
        if a == A.done:
            break
        # pickup: name the object in front, so the named tool path is what runs
        code = f"pick_up({front_name(env)!r})" if a == A.pickup else calls[a]
        out = run_code(env, code)
        assert "Traceback" not in out and "cannot find a way" not in out, out
        n += 1
    return env.status(), n


@needs_engine
def test_bot_oracle():
    tasks = load_tasks("babyai", "test")[:220]    # 11 levels x the first 20 seeds = 220 episodes
    per_level, steps = collections.Counter(), 0
    for t in tasks:
        status, n = play_bot(t)
        assert status == {"success": True, "done": True}, (t, status)
        per_level[t["level"]] += 1
        steps += n
    assert len(per_level) >= 3 and sum(per_level.values()) >= 100
    assert steps > 1000


# ---- observations and tools ----

@needs_engine
def test_observation_and_tools():
    task = next(t for t in load_tasks("babyai_GoToLocal", "test") if t["seed"] == 0)
    env = make_env(task)
    obs = env.initial_observation
    assert obs.startswith("You see") and "You are carrying: nothing." in obs and "In front of you:" in obs
    assert "ahead" in obs
    assert set(env.tools) == {"turn_left", "turn_right", "move_forward", "go_to", "pick_up", "drop",
                              "toggle", "go_through", "toggle_and_go_through"}
    out = run_code(env, "go_to('purple unicorn 3')")
    assert out.startswith('You have not seen any "purple unicorn 3". Objects you have seen:')
    assert "Traceback" not in out
    out = run_code(env, "go_through('purple unicorn 3')")
    assert "have not seen" in out
    out = run_code(env, "drop()")
    assert out.startswith("You are not carrying anything.")
    out = run_code(env, "turn_left()")
    assert out.startswith("You turn left.")
    # go_to the mission's object wins a GoTo level; the tool call returns None
    target = task["input"].removeprefix("go to the ").removeprefix("go to a ")
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        assert env.tools["go_to"](target) is None
    assert "You have completed the mission!" in buf.getvalue(), buf.getvalue()
    assert env.status() == {"success": True, "done": True}
    assert run_code(env, "turn_left()").startswith("The episode is over")


@needs_engine
def test_pickup_and_doors():
    # PickupDist: pick_up(name) walks there and picks it up
    task = load_tasks("babyai_PickupDist", "test")[0]
    env = make_env(task)
    name = next(n for n in env.known if all(w in n for w in task["input"].split()[-1:]))
    out = run_code(env, f"pick_up({name!r})")
    assert "You pick up the" in out
    # OpenDoor: toggle_and_go_through opens the mission's door (known to the verifier) and walks through
    for task in load_tasks("babyai_OpenDoor", "test"):
        env = make_env(task)
        door = env.minigrid.instrs.desc.obj_set[0].dp_name
        if door in env.known:
            out = run_code(env, f"go_through({door!r})")       # walks there, but it is closed
            assert f"The {door} is closed." in out and not env.status()["success"], out
            assert front_name(env) == door
            out = run_code(env, f"toggle_and_go_through({door!r})")
            assert f"You open the {door}" in out and env.status()["success"], out
            break
    else:
        pytest.fail("no OpenDoor test episode starts with its door in view")
    out = run_code(make_env(task), "go_through('red ball 1')")
    assert "Traceback" not in out


@needs_engine
def test_go_to_says_whether_a_way_exists_at_all():
    """A real GoToLocal room rebuilt as two halves joined by one door: the way to the ball is
    through unseen places, behind the closed door, or blocked by a box beyond the door."""
    from minigrid.core.world_object import Ball, Box, Door, Wall
    env = make_env(load_tasks("babyai_GoToLocal", "test")[0])
    u = env.minigrid
    for x in range(1, u.width - 1):
        for y in range(1, u.height - 1):
            u.grid.set(x, y, None)
    for y in range(1, u.height - 1):
        u.grid.set(3, y, Wall())
    door, ball, box = Door("blue", is_open=True), Ball("red"), Box("grey")
    door.dp_name, ball.dp_name, box.dp_name = "blue door 1", "red ball 1", "grey box 1"
    u.grid.set(3, 3, door)
    u.grid.set(5, 5, ball)
    u.agent_pos, u.agent_dir = (1, 3), 0
    env.known = {"blue door 1": door, "red ball 1": ball}
    env.seen[:] = False
    env.seen[1:4, :] = True                    # the agent's half and the door, not beyond

    def go_to():
        return run_code(env, "go_to('red ball 1')").splitlines()[0]
    assert go_to() == "You cannot find a way to the red ball 1 through the places you have seen."
    door.is_open = False
    assert go_to() == "There is no open way to the red ball 1: a closed door is on every path to it."
    door.is_open = True
    u.grid.set(4, 3, box)                      # the only way on from the door
    assert go_to() == "There is no way to the red ball 1: walls and objects block every path to it."
    env.seen[:] = True                         # all of it seen: still no way, the same answer
    assert go_to() == "There is no way to the red ball 1: walls and objects block every path to it."
    u.grid.set(4, 3, None)
    assert go_to().startswith("You go to the red ball 1.")
    assert tuple(u.front_pos) == (5, 5)        # facing the ball


# ---- branching ----

@needs_engine
def test_fork_branches_diverge():
    env = make_env(load_tasks("babyai_GoToLocal", "test")[0])
    run_code(env, "turn_left()")
    run_code(env, "turn_left()")
    base = list(env.history)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            run_code(env, "move_forward()")
            os.write(w, json.dumps({"history": env.history, "pos": [int(v) for v in env.minigrid.agent_pos],
                                    "dir": int(env.minigrid.agent_dir)}).encode())
        finally:
            os._exit(0)
    os.close(w)
    run_code(env, "turn_right()")
    child = json.loads(os.read(r, 1 << 20).decode())
    os.waitpid(pid, 0)
    assert [tuple(h) for h in child["history"][:2]] == base == env.history[:2]
    assert child["history"][2][0] == "move_forward()" and env.history[2][0] == "turn_right()"
    assert child["dir"] != int(env.minigrid.agent_dir)


# ---- through the sandbox pool ----

@needs_engine
def test_sandbox_episode():
    sandbox = pytest.importorskip("densepolicy.sandbox")
    task = load_tasks("babyai_GoToRedBallGrey", "test")[0]

    async def go():
        preload = babyai.dataset_info("babyai")["preload"]
        async with sandbox.SandboxPool(timeout=30.0, preload=preload) as pool:
            snap, info = await pool.new_episode(setup="dataset.babyai:make_env", setup_kwargs={"task": task})
            assert info["observation"].startswith("You see")
            a = await pool.run(snap, "turn_left()")
            b = await pool.run(snap, "go_to('red ball 1')")
            return a[1], b[1]
    a, b = asyncio.run(go())
    assert a.output.startswith("You turn left.") and not a.status["success"]
    assert b.status == {"success": True, "done": True}, b.output
