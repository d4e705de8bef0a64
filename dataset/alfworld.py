"""ALFWorld text games (TextWorld PDDL engine) as CodeAct tools.

Games: `<alfworld dir>/json_2.1.1/<split>/<task_type>-<obj>-<movable>-<recep>-<scene>/trial_*/game.tw-pddl`,
listed by glob (there is no traj_data.json, so ALFWorld's own game collector finds nothing) and
loaded with `textworld.start` + ALFWorld's `AlfredDemangler` (object names like "mug 1").
The alfworld dir is, first found: `<data_dir>/alfworld` (explicit argument), `$ALFWORLD_DATA`
(the original's variable, a folder holding json_2.1.1/), `$DATA_DIR/alfworld`,
`<project root>/../shared/data/alfworld`.

Splits: train, valid_seen, valid_unseen (= test). Each tool call sends ONE text command to the
engine and prints the engine's answer; "Nothing happens." becomes "This action is not valid: ...",
and a name that is not in the game gets a list of what can be referred to instead.
The engines are imported lazily (inside make_env), so this module imports without them.
"""
import contextlib
import glob
import json
import os
import re
import sys

from dataset import DataError, DatasetSpec, TreeDefaults, register
from dataset.environment import ToolEnvironment
from densepolicy import paths


# folder prefix -> short task type (SPEC §3)
TASK_TYPES = {
    "pick_and_place_simple": "put",
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
    "look_at_obj_in_light": "examine",
    "pick_two_obj_and_place": "puttwo",
}
DATASETS = ["alfworld"] + [f"alfworld_{t}" for t in TASK_TYPES.values()]
SPLITS = {"train": "train", "valid_seen": "valid_seen", "valid_unseen": "valid_unseen",
          "test": "valid_unseen"}

TOOLS_DOC = """\
goto(recep): go to a receptacle, e.g. goto("countertop 1")
take(obj, recep): pick up an object from the receptacle you are at, e.g. take("mug 1", "countertop 1")
put(obj, recep): put the object you carry in/on the receptacle you are at, e.g. put("mug 1", "coffeemachine 1")
open(recep): open a receptacle (fridge, drawer, cabinet, ...)
close(recep): close a receptacle
toggle(obj): switch an object (e.g. a desklamp) on or off
clean(obj, recep): clean the object you carry with a receptacle, e.g. clean("mug 1", "sinkbasin 1")
cool(obj, recep): cool the object you carry with a receptacle, e.g. cool("mug 1", "fridge 1")
heat(obj, recep): heat the object you carry with a receptacle, e.g. heat("mug 1", "microwave 1")
inventory(): list what you are carrying
examine(x): look at an object or receptacle closely
use(obj): use an object, e.g. use("desklamp 1") to turn on a lamp
Names are written as in the observations: the type and a number, e.g. "mug 1"."""

_HEADER = "-= Welcome to TextWorld, ALFRED! =-"
_GOAL = re.compile(r"Your task is to: ([^\"\n]*)")


def dataset_info(name: str) -> dict:
    """How the runner sets this dataset up (dataset.dataset_info, for this module's names)."""
    _task_type_of(name)
    return SPEC.info()


def _task_type_of(dataset: str):
    if dataset not in DATASETS:
        raise DataError(f"unknown ALFWorld dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    return dataset.partition("_")[2] or None  # None = all types


def alfworld_dir(data_dir: str | None = None) -> str:
    """The folder holding json_2.1.1/ (see the module docstring for the search order)."""
    if data_dir:
        for d in (os.path.join(data_dir, "alfworld"), data_dir):
            if os.path.isdir(os.path.join(d, "json_2.1.1")):
                return d
        return os.path.join(data_dir, "alfworld")
    env = os.environ.get("ALFWORLD_DATA")
    # importing alfworld sets ALFWORLD_DATA to its download cache when unset: skip that default
    if env and not (env == os.path.expanduser("~/.cache/alfworld")
                    and not os.path.isdir(os.path.join(env, "json_2.1.1"))):
        return env
    return os.path.normpath(paths.data_dir() / "alfworld")


def load_tasks(dataset: str, split: str, data_dir: str | None = None) -> list[dict]:
    """Games of `split` (train / valid_seen / valid_unseen; test = valid_unseen), sorted by path,
    filtered by the dataset's task type; index = position in the returned list."""
    want = _task_type_of(dataset)
    if split not in SPLITS:
        raise DataError(f"unknown ALFWorld split {split!r}; expected one of {', '.join(SPLITS)}")
    root = os.path.join(alfworld_dir(data_dir), "json_2.1.1", SPLITS[split])
    files = sorted(glob.glob(os.path.join(root, "*", "*", "game.tw-pddl")))
    if not files:
        raise DataError(f"no ALFWorld games at {root}/*/trial_*/game.tw-pddl; set ALFWORLD_DATA to a "
                        f"folder holding json_2.1.1/ or pass data_dir holding alfworld/json_2.1.1/")
    tasks = []
    for path in files:
        ttype = TASK_TYPES.get(os.path.basename(os.path.dirname(os.path.dirname(path))).split("-")[0])
        if ttype is None or (want and ttype != want):
            continue
        try:  # the goal sentence is a fixed rule of the game's grammar: no engine needed
            goal = _GOAL.search(json.load(open(path))["grammar"]).group(1).strip()
        except (ValueError, KeyError, AttributeError):
            raise DataError(f"malformed ALFWorld game {path}: expected JSON with a grammar holding "
                            f"'Your task is to: ...'") from None
        tasks.append({"index": len(tasks), "input": goal, "target": "", "task_file": path,
                      "task_type": ttype})
    return tasks


def make_env(task: dict) -> "Env":
    return Env(task["task_file"])


def _memoize_grammar_parse():
    """textworld re-parses the same grammar snippets with tatsu at every step (each step derives the
    text of every admissible command): ~40% of the step time. Parse each snippet once per process;
    callers attach context to the returned symbols, so each call gets a deep copy."""
    from copy import deepcopy
    from textworld.envs.pddl import textgen
    if getattr(textgen._parse_and_convert, "memoized", False):
        return
    parse, cache = textgen._parse_and_convert, {}

    def parse_once(text, **kw):
        key = (text, tuple(sorted(kw.items())))
        if key not in cache:
            cache[key] = parse(text, **kw)
        return deepcopy(cache[key])
    parse_once.memoized = True
    textgen._parse_and_convert = parse_once


_LIB_TAKEN = False  # this process (or the one it was forked from) already holds a game's library


@contextlib.contextmanager
def _fast_load():
    """Two fixes to how textworld loads a game, for the duration of Env.__init__:
    - It translates the PDDL problem to SAS 4 times (load and reset each build a PddlState,
      which translates plainly and again optimized for a replanner we never call): ~75% of the
      load time. All four are served from the one plain translation.
    - fast-downward keeps the game in the C library's globals, so each game loads its own copy of
      the 33 MB libdownward.so, copied to a temp file first. The sandbox caps file writes at
      16 MiB, so the first game of a process loads the library through a symlink instead (no
      write); only a later game in the same process needs a real copy."""
    global _LIB_TAKEN
    import shutil
    import fast_downward
    import fast_downward.interface as fdi
    real, argv, memo = fast_downward.pddl2sas, sys.argv, {}

    def once(domain, problem, verbose=False, optimize=False):
        if (domain, problem) not in memo:
            memo[domain, problem] = real(domain, problem, verbose=verbose)
        return memo[domain, problem]
    fast_downward.pddl2sas = once
    copy = shutil.copyfile
    if not _LIB_TAKEN:
        fdi.shutil.copyfile = os.symlink
    _LIB_TAKEN = True
    try:
        yield
    finally:
        fast_downward.pddl2sas, sys.argv = real, argv  # pddl2sas also overwrites sys.argv
        fdi.shutil.copyfile = copy


def _norm(name) -> str:
    """'Mug1' / ' the mug 1 ' -> 'mug 1' (the engine's spelling)."""
    s = " ".join(str(name).lower().split())
    s = re.sub(r"^(the|a|an) ", "", s)
    return re.sub(r"([a-z])(\d)", r"\1 \2", s)


class Env(ToolEnvironment):
    """One ALFWorld game. State is the engine's Python objects + fast-downward's C heap, both
    plain process memory, so os.fork branches an episode."""

    def __init__(self, game_file: str):
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        _memoize_grammar_parse()
        infos = textworld.EnvInfos(won=True, admissible_commands=True)
        with _fast_load():
            self._env = textworld.start(game_file, infos, wrappers=[AlfredDemangler()])
            self._state = self._env.reset()
        intro = self._state.feedback.replace(_HEADER, "").strip()
        self.goal = _GOAL.search(intro).group(1).strip()
        self.initial_observation = intro[:intro.index("Your task is to:")].strip()
        self.won = bool(self._state["won"])
        # every name the game knows (objects, receptacles), for the non-existent-name hint
        self.names = {i.name for i in self._state["_entity_infos"].values()
                      if i.name and i.type in ("object", "receptacle")}
        self.receptacles = [c[6:] for c in self._state["admissible_commands"] if c.startswith("go to ")]
        self.at = None     # the receptacle the agent went to last
        self.history = []  # (command, observation)
        self.tools = {f.__name__: f for f in (
            self.goto, self.take, self.put, self.open, self.close, self.toggle, self.clean,
            self.cool, self.heat, self.inventory, self.examine, self.use)}

    def status(self) -> dict:
        return {"success": self.won, "done": self.won}

    # ---- engine ----

    def step(self, command: str, names=()) -> str:
        """Send one command; return the observation text (not printed)."""
        names = [_norm(n) for n in names]
        unknown = [n for n in names if n not in self.names]
        self._state, _, _ = self._env.step(command)
        self.won = self.won or bool(self._state["won"])
        obs = self._state.feedback.strip()
        if obs == "Nothing happens.":
            obs = f"This action is not valid: {command}."
            if unknown:
                obs += " " + self._unknown_hint(unknown)
            elif command == f"go to {self.at}":
                obs += f" You are already at {self.at}."
        elif command.startswith("go to "):
            self.at = command[6:]
        self.history.append((command, obs))
        return obs

    def _act(self, command, *names):
        print(self.step(command, names))

    def _unknown_hint(self, unknown) -> str:
        adm = self._state["admissible_commands"]
        here = sorted({m.group(1) for c in adm if (m := re.match(r"take (.+) from ", c))})
        msg = " ".join(f'There is no "{n}" in this room.' for n in unknown)
        msg += f" Receptacles in this room: {', '.join(self.receptacles)}."
        msg += f" Objects you can take here: {', '.join(here)}." if here else ""
        return msg

    def _pick(self, candidates) -> str:
        """The first candidate command the engine accepts now (else the first, to be rejected)."""
        adm = set(self._state["admissible_commands"])
        return next((c for c in candidates if c in adm), candidates[0])

    # ---- tools: each prints the observation and returns None (the sandbox echoes return values) ----

    def goto(self, recep):
        self._act(f"go to {_norm(recep)}", recep)

    def take(self, obj, recep):
        self._act(f"take {_norm(obj)} from {_norm(recep)}", obj, recep)

    def put(self, obj, recep):
        o, r = _norm(obj), _norm(recep)
        self._act(self._pick([f"move {o} to {r}", f"put {o} in {r}", f"put {o} into {r}"]), obj, recep)

    def open(self, recep):
        self._act(f"open {_norm(recep)}", recep)

    def close(self, recep):
        self._act(f"close {_norm(recep)}", recep)

    def toggle(self, obj):
        self._act(f"use {_norm(obj)}", obj)  # ALFWorld's toggle action is worded "use X"

    def clean(self, obj, recep):
        self._act(f"clean {_norm(obj)} with {_norm(recep)}", obj, recep)

    def cool(self, obj, recep):
        self._act(f"cool {_norm(obj)} with {_norm(recep)}", obj, recep)

    def heat(self, obj, recep):
        self._act(f"heat {_norm(obj)} with {_norm(recep)}", obj, recep)

    def inventory(self):
        self._act("inventory")

    def examine(self, x):
        self._act(f"examine {_norm(x)}", x)

    def use(self, obj):
        self._act(f"use {_norm(obj)}", obj)


SPEC = register(DatasetSpec(
    family="alfworld", names=tuple(DATASETS), load_tasks=load_tasks, kind="tool",
    n_icl=0, max_steps=30, tree=TreeDefaults(base=8, window_size=8, max_steps=30, max_sample_number=512),
    setup="dataset.alfworld:make_env", tools_doc=TOOLS_DOC,
    preload=("dataset.alfworld", "textworld", "alfworld.agents.environment.alfred_tw_env"),
    task_types=("put", "examine", "clean", "cool", "heat", "puttwo")))  # the score tables' order (SPEC §7)
