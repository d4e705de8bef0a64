"""Task sources: one registry of dataset families, each registered by the module that defines it.

`load_tasks(name, split)` and `dataset_info(name)` are the entry points; `spec(name)` /
`family(name)` look a dataset name up, `agent_defaults(name, agent)` gives the launcher's
per-family agent flags. A module of this package defines a family by calling
`register(DatasetSpec(...))` at import. The modules are imported on the first lookup, and none
imports an optional engine (textworld, minigrid) at top level, so a missing engine only breaks
the datasets that need it. What a tool environment must provide: dataset/environment.py.
"""
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable


class DataError(Exception):
    """A dataset file is missing or malformed; the message is one line saying what to do."""


KINDS = ("gsm8k", "math", "tool")   # how a task is prompted and scored (agents/prompts.instruction)
AGENTS = ("codeact_agent", "codeact_agent_tree")   # the agents agent_defaults has settings for


@dataclass(frozen=True)
class TreeDefaults:
    """The tree sampler's settings for a family (SPEC §5)."""
    base: int               # B: rollouts from the root before branching
    window_size: int        # W: rollouts per round
    max_steps: int          # D: tree depth (replies per episode)
    max_sample_number: int  # M: target number of contrast pairs


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the pipeline knows about one dataset family, in one place."""
    family: str                  # the family's name, e.g. "math"; also one of its dataset names
    names: tuple[str, ...]       # the dataset names it serves exactly, e.g. math, math500, math_level1..5
    load_tasks: Callable[[str, str, str | None], list[dict]]  # (name, split, data_dir) -> task rows
    kind: str                    # answer kind ("gsm8k" / "math") or "tool" (a sandbox environment)
    n_icl: int                   # in-context examples by default (SPEC §4), evaluation and trees
    max_steps: int               # evaluation: replies per episode
    tree: TreeDefaults           # tree sampling defaults
    max_turn: int | None = None  # answer attempts per episode; None: not an answer task
    examples: str | None = None  # in-context example set (agents/prompts.EXAMPLES key); None: none
    name_pattern: str | None = None  # more names, e.g. "babyai_<level>": the text before '<' is a prefix
    check_name: Callable[[str], object] | None = None  # raises DataError for a bad pattern name
    setup: str | None = None     # tool tasks: "module:function" building the environment in the sandbox
    tools_doc: str | None = None  # tool tasks: the tools as the instruction lists them
    preload: tuple[str, ...] = ()  # tool tasks: modules the sandbox imports once, before forking
    task_types: tuple[str, ...] = ()  # task types the score tables break results down by (ALFWorld)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.family}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if (self.kind == "tool") != (self.setup is not None):
            raise ValueError(f"{self.family}: a tool family needs a setup, an answer family none")

    def info(self) -> dict:
        """The dataset_info() view: kind, n_icl, setup, tools_doc, icl (only where the example set
        is not the answer kind's own, which prompts fall back to), preload."""
        info = {"kind": self.kind, "n_icl": self.n_icl, "setup": self.setup, "tools_doc": self.tools_doc}
        if self.examples and self.examples != self.kind:
            info["icl"] = self.examples
        info["preload"] = self.preload
        return info


_FAMILIES: dict[str, DatasetSpec] = {}   # family -> spec
_BY_NAME: dict[str, DatasetSpec] = {}    # exact dataset name -> spec
_UNLOADED: dict[str, str] = {}           # module -> why it could not be imported
_loaded = False


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a family (called by its module at import); its names must be new."""
    taken = [n for n in spec.names if _BY_NAME.get(n, spec).family != spec.family]
    if taken:
        raise ValueError(f"{spec.family}: dataset name(s) {taken} are already registered")
    _FAMILIES[spec.family] = spec
    _BY_NAME.update({n: spec for n in spec.names})
    return spec


def _registry() -> dict[str, DatasetSpec]:
    """All families, importing this package's modules on first use. A module that fails to import
    (a broken install) takes only its own datasets away; the lookup error says why."""
    global _loaded
    if not _loaded:
        for mod in pkgutil.iter_modules(__path__):
            try:
                importlib.import_module(f"{__name__}.{mod.name}")
            except ImportError as e:
                _UNLOADED[mod.name] = f"{type(e).__name__}: {e}"
        _loaded = True
    return _FAMILIES


def spec(name: str) -> DatasetSpec:
    """The family serving dataset `name`; DataError (one line) when there is none."""
    families = _registry()
    if name in _BY_NAME:
        return _BY_NAME[name]
    for s in families.values():
        if s.name_pattern and name.startswith(s.name_pattern.partition("<")[0]):
            if s.check_name:
                s.check_name(name)
            return s
    patterns = [s.name_pattern for s in families.values() if s.name_pattern]
    msg = f"unknown dataset {name!r}; known: {', '.join(sorted(_BY_NAME) + patterns)}"
    if _UNLOADED:
        msg += "; not loaded: " + "; ".join(f"dataset/{m}.py ({why})" for m, why in _UNLOADED.items())
    raise DataError(msg)


def family(name: str) -> str:
    """The family name of dataset `name` (e.g. math_level3 -> math)."""
    return spec(name).family


def families() -> dict[str, DatasetSpec]:
    """Every registered family, by name."""
    return dict(_registry())


def names() -> list[str]:
    """Every exact dataset name registered (families also take names their spec matches)."""
    _registry()
    return sorted(_BY_NAME)


def load_tasks(name: str, split: str, data_dir: str | None = None) -> list[dict]:
    """Tasks of dataset `name` for `split` ('train' / 'test'; see each module for extras)."""
    return spec(name).load_tasks(name, split, data_dir)


def dataset_info(name: str) -> dict:
    """How to run a dataset: kind ('gsm8k' / 'math' / 'tool'), n_icl, setup, tools_doc, preload."""
    return spec(name).info()


def agent_defaults(name: str, agent: str) -> list[str]:
    """The family's default flags for `agent` (codeact_agent: evaluation, codeact_agent_tree: tree
    sampling), as argv words; flags given after them on the command line override them."""
    if agent not in AGENTS:
        raise ValueError(f"unknown agent {agent!r}; expected one of {', '.join(AGENTS)}")
    s = spec(name)
    flags = {"n_icl": s.n_icl, "max_turn": s.max_turn}
    if agent == "codeact_agent":
        flags["max_steps"] = s.max_steps
    else:
        flags.update(base=s.tree.base, window_size=s.tree.window_size, max_steps=s.tree.max_steps,
                     max_sample_number=s.tree.max_sample_number)
    return [word for flag, value in flags.items() if value is not None
            for word in (f"--{flag}", str(value))]
