"""BabyAI levels (minigrid, gymnasium) as CodeAct tools over a text description of the view.

Levels (LEVELS): single-room GoTo/Pickup/PutNext levels, plus multi-room door levels, all solvable
by minigrid's BabyAIBot and expressible with the tools below:
  GoToRedBallGrey, GoToRedBall, GoToObj, GoToLocal, PickupDist, PickupLoc, PutNextLocal,
  GoToDoor, GoToObjDoor, OpenDoor, UnlockLocal
Splits (per level; a task is a (level, seed) pair, the level generated offline from the seed):
  test  = seeds TEST_SEEDS  = [0, 1000)          -> 1000 per level, 11 * 1000 = 11000 tasks
  train = seeds TRAIN_SEEDS = [100000, 100100)   -> 11 * 100 = 1100 tasks
Both are disjoint from the in-context examples' seeds (agents/prompts.py, 5000-5999).
Tasks are listed seed-major (all levels for seed s, then s+1), so any prefix mixes levels.
A level's missions are generated once per split and kept in the cache (models.cache_dir()).
Dataset "babyai" = all levels; "babyai_<level>" (case-insensitive, e.g. babyai_gotolocal) = one.

Objects are named "<color> <type> <n>" (e.g. "red ball 1", "blue door 2"), numbered per color and
type in grid order at reset; names stay fixed when objects are carried or moved.
The agent sees a 7x7 egocentric window (walls block sight); positions are given as steps ahead
and to the left/right. go_to plans a shortest path (BFS over (cell, direction)) through cells the
agent has seen; when there is none it says whether one exists through unseen places, only behind a
closed door, or not at all (objects block every path). Every tool runs minigrid primitive actions and prints what happened + the new view.
Success = the mission's reward > 0; the level's own step budget (max_steps primitive actions)
applies, as in BabyAI. minigrid is imported lazily (load_tasks / make_env).
"""
import contextlib
import io
import os
import re
from collections import deque

from dataset import DataError, DatasetSpec, TreeDefaults, register
from dataset.environment import ToolEnvironment

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # minigrid imports pygame, which greets on stdout

LEVELS = ["GoToRedBallGrey", "GoToRedBall", "GoToObj", "GoToLocal", "PickupDist", "PickupLoc",
          "PutNextLocal", "GoToDoor", "GoToObjDoor", "OpenDoor", "UnlockLocal"]
TEST_SEEDS = range(0, 1000)
TRAIN_SEEDS = range(100_000, 100_100)
SPLITS = {"train": TRAIN_SEEDS, "test": TEST_SEEDS}

TOOLS_DOC = """\
turn_left(): turn 90 degrees to the left
turn_right(): turn 90 degrees to the right
move_forward(): move one step forward
go_to(obj): walk to the object (one you have seen) and face it, e.g. go_to("red ball 1")
pick_up(obj): go to the object and pick it up (you can carry one object at a time)
drop(): put the carried object down in front of you
toggle(): open/close the door, or open the box, right in front of you (a locked door needs its key)
go_through(door): go to an open door and walk through it, e.g. go_through("blue door 1")
toggle_and_go_through(door): go to a door, open it and walk through it
Objects are named by color, type and number, as in the observations."""

_VIEW_HEADER = "You see"


def dataset_info(name: str) -> dict:
    """How the runner sets this dataset up (dataset.dataset_info, for this module's names)."""
    _levels_of(name)
    return SPEC.info()


def _levels_of(dataset: str) -> list[str]:
    if dataset == "babyai":
        return list(LEVELS)
    want = dataset[len("babyai_"):].lower() if dataset.startswith("babyai_") else None
    for lvl in LEVELS:
        if lvl.lower() == want:
            return [lvl]
    raise DataError(f"unknown BabyAI dataset {dataset!r}; expected 'babyai' or 'babyai_<level>' with "
                    f"level one of {', '.join(LEVELS)}")


def _make_gym(level: str, seed: int):
    """The level's environment, reset with `seed` (its generator prints rejected samples: hushed)."""
    import gymnasium as gym
    import minigrid  # noqa: F401  (registers the BabyAI-* ids)
    env = gym.make(f"BabyAI-{level}-v0")
    with contextlib.redirect_stdout(io.StringIO()):
        env.reset(seed=seed)
    return env


def load_tasks(dataset: str, split: str, data_dir: str | None = None) -> list[dict]:
    """(level, seed) tasks of the split; data_dir is unused (levels are generated)."""
    levels = _levels_of(dataset)
    if split not in SPLITS:
        raise DataError(f"unknown BabyAI split {split!r}; expected one of {', '.join(SPLITS)}")
    seeds = SPLITS[split]
    missions = {level: _missions(level, seeds) for level in levels}
    tasks = []
    for i, seed in enumerate(seeds):
        for level in levels:
            tasks.append({"index": len(tasks), "input": missions[level][i], "target": "", "level": level,
                          "seed": seed})
    return tasks


def _missions(level: str, seeds: range) -> list[str]:
    """The level's mission for every seed, generated once (about 4 ms a seed) and cached."""
    import json
    from importlib.metadata import version
    from densepolicy.models import cache_dir
    path = cache_dir() / "babyai" / f"{level}.{seeds.start}-{seeds.stop}.minigrid-{version('minigrid')}.json"
    if path.exists():
        return json.loads(path.read_text())
    missions = [_make_gym(level, seed).unwrapped.mission for seed in seeds]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(missions))
    os.replace(tmp, path)
    return missions


def make_env(task: dict) -> "Env":
    return Env(task["level"], int(task["seed"]))


def _norm(name) -> str:
    s = " ".join(str(name).lower().replace("_", " ").split())
    s = re.sub(r"^(the|a|an) ", "", s)
    return re.sub(r"([a-z])(\d)", r"\1 \2", s)


def _steps(n: int) -> str:
    return f"{n} step{'s' if n != 1 else ''}"


class Env(ToolEnvironment):
    """One BabyAI episode. Everything is plain Python/numpy state, so os.fork branches it."""

    def __init__(self, level: str, seed: int):
        _levels_of(f"babyai_{level}")
        self.level, self.seed = level, seed
        self.gym = _make_gym(level, seed)
        # The MiniGrid environment under the gym wrappers (grid, agent position, carried object)
        # and its primitive actions.
        self.minigrid = minigrid = self.gym.unwrapped
        self.actions = minigrid.actions
        self.reward, self.terminated, self.truncated = 0.0, False, False
        self.history = []  # (tool call, observation)
        # stable names "<color> <type> <n>", stored on the objects themselves (they move around)
        counts = {}
        for j in range(minigrid.height):
            for i in range(minigrid.width):
                for o in (minigrid.grid.get(i, j), getattr(minigrid.grid.get(i, j), "contains", None)):
                    if o is not None and o.type not in ("wall", "floor", "goal", "lava"):
                        k = counts[o.color, o.type] = counts.get((o.color, o.type), 0) + 1
                        o.dp_name = f"{o.color} {o.type} {k}"
        import numpy as np
        self.seen = np.zeros((minigrid.width, minigrid.height), dtype=bool)  # cells the agent has seen
        self.known = {}  # name -> object, for objects the agent has seen
        self._look()
        self.mission = minigrid.mission
        self.initial_observation = self.describe()
        self.tools = {f.__name__: f for f in (
            self.turn_left, self.turn_right, self.move_forward, self.go_to, self.pick_up, self.drop,
            self.toggle, self.go_through, self.toggle_and_go_through)}

    def status(self) -> dict:
        return {"success": self.reward > 0, "done": self.terminated or self.truncated}

    # ---- perception ----

    def _view(self):
        """Visible cells as (ahead, right, world x, world y, object)."""
        minigrid = self.minigrid
        grid, vis = minigrid.gen_obs_grid()
        vs = minigrid.agent_view_size
        f, r = minigrid.dir_vec, minigrid.right_vec
        out = []
        for j in range(vs):
            for i in range(vs):
                if not vis[i, j]:
                    continue
                ahead, right = vs - 1 - j, i - vs // 2
                x, y = minigrid.agent_pos + f * ahead + r * right
                if 0 <= x < minigrid.width and 0 <= y < minigrid.height:
                    out.append((ahead, right, int(x), int(y), minigrid.grid.get(x, y)))
        return out

    def _look(self):
        for _, _, x, y, o in self._view():
            self.seen[x, y] = True
            if getattr(o, "dp_name", None):
                self.known[o.dp_name] = o
        if self.minigrid.carrying is not None:
            self.known[self.minigrid.carrying.dp_name] = self.minigrid.carrying

    @staticmethod
    def _label(o) -> str:
        if o is None:
            return "nothing"
        if o.type == "wall":
            return "a wall"
        if o.type == "door":
            return f"{o.dp_name} ({'open' if o.is_open else 'locked' if o.is_locked else 'closed'})"
        return getattr(o, "dp_name", o.type)

    def describe(self) -> str:
        items, walls = [], {}
        for ahead, right, _, _, o in sorted(self._view(), key=lambda v: (v[0] + abs(v[1]), v[0], v[1])):
            if o is None or (ahead, right) == (0, 0):
                continue
            if o.type == "wall":  # nearest wall straight ahead / to each side
                side = "ahead" if right == 0 else "to the left" if ahead == 0 and right < 0 \
                    else "to the right" if ahead == 0 else None
                if side and side not in walls:
                    walls[side] = abs(right) or ahead
                continue
            side = f"to the {'left' if right < 0 else 'right'}"
            where = f"{_steps(ahead)} ahead" + (f" and {abs(right)} {side}" if right else "") if ahead \
                else f"{_steps(abs(right))} {side}"
            items.append(f"- {self._label(o)}: {where}")
        front = self.minigrid.grid.get(*self.minigrid.front_pos)
        lines = [f"{_VIEW_HEADER}:" if items else f"{_VIEW_HEADER} no objects."] + items
        if walls:
            lines.append("Walls: " + ", ".join(f"{_steps(d)} {s}" for s, d in walls.items()) + ".")
        lines.append(f"In front of you: {self._label(front)}.")
        c = self.minigrid.carrying
        lines.append(f"You are carrying: {c.dp_name if c else 'nothing'}.")
        return "\n".join(lines)

    # ---- acting ----

    @property
    def over(self):
        return self.terminated or self.truncated

    def _prim(self, action) -> None:
        _, reward, term, trunc, _ = self.gym.step(action)
        self.reward = max(self.reward, float(reward))
        self.terminated, self.truncated = self.terminated or term, self.truncated or trunc
        self._look()

    def _emit(self, call: str, msg: str) -> None:
        if self.reward > 0:
            msg += " You have completed the mission!"
        elif self.terminated:
            msg += " The mission has failed."
        elif self.truncated:
            msg += " You have run out of steps; the episode is over."
        obs = f"{msg}\n{self.describe()}"
        self.history.append((call, obs))
        print(obs)

    def _refuse_if_over(self, call) -> bool:
        if self.over:
            obs = "The episode is over; no more actions can be taken."
            self.history.append((call, obs))
            print(obs)
        return self.over

    def _find(self, name):
        """(object, None) for a seen object, else (None, helpful message)."""
        n = _norm(name)
        if n in self.known:
            return self.known[n], None
        matches = [k for k in self.known if k.rsplit(" ", 1)[0] == n]  # "red ball" when unique
        if len(matches) == 1:
            return self.known[matches[0]], None
        seen = ", ".join(sorted(self.known)) or "none yet"
        if len(matches) > 1:
            return None, f'"{name}" is ambiguous: say which one ({", ".join(sorted(matches))}).'
        return None, f'You have not seen any "{name}". Objects you have seen: {seen}.'

    def _pos_of(self, obj):
        g = self.minigrid.grid
        for k, o in enumerate(g.grid):
            if o is obj:
                return k % g.width, k // g.width
        return None

    def _plan(self, target, seen_only=True, doors_open=False) -> list | None:
        """Shortest primitive-action path (left/right/forward) to face `target` (x, y), walking only
        through cells that can be entered: seen ones (what go_to walks), or any (seen_only=False,
        doors_open=True counting every door as open), which only tell why there is no way."""
        minigrid, actions = self.minigrid, self.actions
        vecs = [(1, 0), (0, 1), (-1, 0), (0, -1)]  # minigrid's directions 0..3

        def free(x, y):
            if not (0 <= x < minigrid.width and 0 <= y < minigrid.height):
                return False
            if seen_only and not self.seen[x, y]:
                return False
            o = minigrid.grid.get(x, y)
            return o is None or o.can_overlap() or (doors_open and o.type == "door")

        start = (int(minigrid.agent_pos[0]), int(minigrid.agent_pos[1]), int(minigrid.agent_dir))
        prev, todo = {start: None}, deque([start])
        while todo:
            x, y, d = s = todo.popleft()
            if (x + vecs[d][0], y + vecs[d][1]) == tuple(target):
                path = []
                while prev[s] is not None:
                    s, a = prev[s]
                    path.append(a)
                return path[::-1]
            nxt = [((x, y, (d - 1) % 4), actions.left), ((x, y, (d + 1) % 4), actions.right)]
            if free(x + vecs[d][0], y + vecs[d][1]):
                nxt.append(((x + vecs[d][0], y + vecs[d][1], d), actions.forward))
            for t, a in nxt:
                if t not in prev:
                    prev[t] = (s, a)
                    todo.append(t)
        return None

    def _approach(self, obj) -> str | None:
        """Walk to face `obj`; None on success, else why not."""
        if obj is self.minigrid.carrying:
            return f"You are carrying the {obj.dp_name}."
        pos = self._pos_of(obj)
        path = None if pos is None else self._plan(pos)
        if path is None:
            # Why: a way through unseen places exists, or only once a door opens, or none at all.
            if pos is None or self._plan(pos, seen_only=False) is not None:
                return f"You cannot find a way to the {obj.dp_name} through the places you have seen."
            if self._plan(pos, seen_only=False, doors_open=True) is not None:
                return f"There is no open way to the {obj.dp_name}: a closed door is on every path to it."
            return f"There is no way to the {obj.dp_name}: walls and objects block every path to it."
        for a in path:
            if self.over:
                break
            self._prim(a)
        return None

    # ---- tools (each prints the observation and returns None: the sandbox echoes return values) ----

    def turn_left(self):
        if not self._refuse_if_over("turn_left()"):
            self._prim(self.actions.left)
            self._emit("turn_left()", "You turn left.")

    def turn_right(self):
        if not self._refuse_if_over("turn_right()"):
            self._prim(self.actions.right)
            self._emit("turn_right()", "You turn right.")

    def move_forward(self):
        if self._refuse_if_over("move_forward()"):
            return
        before, front = tuple(self.minigrid.agent_pos), self.minigrid.grid.get(*self.minigrid.front_pos)
        self._prim(self.actions.forward)
        moved = tuple(self.minigrid.agent_pos) != before
        self._emit("move_forward()", "You move forward." if moved else
                   f"You cannot move forward: {self._label(front)} is in the way.")

    def go_to(self, obj):
        call = f"go_to({obj!r})"
        if self._refuse_if_over(call):
            return
        o, err = self._find(obj)
        if o is not None:
            err = self._approach(o)
        self._emit(call, err or f"You go to the {o.dp_name}.")

    def pick_up(self, obj=None):
        """pick_up() alone picks up whatever is right in front."""
        call = f"pick_up({'' if obj is None else repr(obj)})"
        if self._refuse_if_over(call):
            return
        if obj is not None:
            o, err = self._find(obj)
            if o is not None and self.minigrid.carrying is not None and o is not self.minigrid.carrying:
                err = f"You are already carrying the {self.minigrid.carrying.dp_name}; drop it first."
            elif o is not None and self.minigrid.grid.get(*self.minigrid.front_pos) is not o:
                err = self._approach(o)
            if err:
                return self._emit(call, err)
        front = self.minigrid.grid.get(*self.minigrid.front_pos)
        held = self.minigrid.carrying
        self._prim(self.actions.pickup)
        if self.minigrid.carrying is not held:
            msg = f"You pick up the {self.minigrid.carrying.dp_name}."
        elif held is not None:
            msg = f"You cannot pick that up: you are already carrying the {held.dp_name}."
        elif front is None or front.type == "wall":
            msg = "There is nothing to pick up in front of you."
        else:
            msg = f"You cannot pick up {self._label(front)}."
        self._emit(call, msg)

    def drop(self):
        if self._refuse_if_over("drop()"):
            return
        held, front = self.minigrid.carrying, self.minigrid.grid.get(*self.minigrid.front_pos)
        self._prim(self.actions.drop)
        if held is None:
            msg = "You are not carrying anything."
        elif self.minigrid.carrying is None:
            msg = f"You drop the {held.dp_name}."
        else:
            msg = f"You cannot drop the {held.dp_name} here: {self._label(front)} is in the way."
        self._emit("drop()", msg)

    def _toggle_front(self) -> str:
        pos = tuple(self.minigrid.front_pos)
        front = self.minigrid.grid.get(*pos)
        was_open = getattr(front, "is_open", None)
        self._prim(self.actions.toggle)
        if front is None or front.type == "wall":
            return "There is nothing to toggle in front of you."
        if front.type == "door":
            if front.is_open != was_open:
                return f"You {'open' if front.is_open else 'close'} the {front.dp_name}."
            return f"The {front.dp_name} is locked; you need to carry the {front.color} key."
        if front.type == "box" and self.minigrid.grid.get(*pos) is not front:
            inside = self.minigrid.grid.get(*pos)
            return f"You open the {front.dp_name}; it " + \
                (f"contained a {inside.dp_name}." if inside is not None else "was empty.")
        return f"Nothing happens: {self._label(front)} cannot be toggled."

    def toggle(self):
        if not self._refuse_if_over("toggle()"):
            self._emit("toggle()", self._toggle_front())

    def _through(self, call, door, open_it):
        if self._refuse_if_over(call):
            return
        d, err = self._find(door)
        if d is not None and d.type != "door":
            err = f"The {d.dp_name} is not a door."
        if d is not None and not err and self.minigrid.grid.get(*self.minigrid.front_pos) is not d:
            err = self._approach(d)
        if err:
            return self._emit(call, err)
        msgs = []
        if open_it and not d.is_open and not self.over:
            msgs.append(self._toggle_front())
        if not d.is_open:
            msgs.append(f"The {d.dp_name} is {'locked' if d.is_locked else 'closed'}.")
            return self._emit(call, " ".join(msgs))
        for _ in range(2):  # onto the door cell, then out the other side
            if not self.over:
                self._prim(self.actions.forward)
        on_door = self._pos_of(d) == tuple(self.minigrid.agent_pos)
        msgs.append(f"You stop on the {d.dp_name}: the way beyond is blocked." if on_door
                    else f"You go through the {d.dp_name}.")
        self._emit(call, " ".join(msgs))

    def go_through(self, door):
        self._through(f"go_through({door!r})", door, open_it=False)

    def toggle_and_go_through(self, door):
        self._through(f"toggle_and_go_through({door!r})", door, open_it=True)


SPEC = register(DatasetSpec(
    family="babyai", names=("babyai",), name_pattern="babyai_<level>", check_name=_levels_of,
    load_tasks=load_tasks, kind="tool", examples="babyai",
    n_icl=0, max_steps=30, tree=TreeDefaults(base=10, window_size=15, max_steps=30, max_sample_number=256),
    setup="dataset.babyai:make_env", tools_doc=TOOLS_DOC, preload=("dataset.babyai", "minigrid")))
