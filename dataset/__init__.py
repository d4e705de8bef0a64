"""Task sources. `load_tasks(name, split)` is the one entry point; each dataset has its own module."""
import importlib


class DataError(Exception):
    """A dataset file is missing or malformed; the message is one line saying what to do."""


ALFWORLD_NAMES = ["alfworld", "alfworld_put", "alfworld_clean", "alfworld_heat", "alfworld_cool",
                  "alfworld_examine", "alfworld_puttwo"]

# name -> module under `dataset/` serving it with `load_tasks(name, split, data_dir)` (and, for
# tool tasks, `dataset_info(name)`). Modules are imported on first use so that a missing optional
# dependency (textworld, minigrid) only breaks the datasets that need it.
MATH_LEVELS = [f"math_level{k}" for k in range(1, 6)]  # MATH restricted to one difficulty level

LOADERS = {"gsm8k": "math_tasks", "math": "math_tasks", "math500": "math_tasks",
           **{n: "math_tasks" for n in MATH_LEVELS},
           "babyai": "babyai", **{n: "alfworld" for n in ALFWORLD_NAMES}}

# Answer tasks need no environment; ICL counts are the original defaults (SPEC §4).
ANSWER_INFO = {
    "gsm8k": {"kind": "gsm8k", "n_icl": 8},
    "math": {"kind": "math", "n_icl": 1},
    "math500": {"kind": "math", "n_icl": 1},
    **{n: {"kind": "math", "n_icl": 1} for n in MATH_LEVELS},
}


def _module(name: str):
    if name.startswith("babyai_"):   # one BabyAI level; babyai.py checks the level's name
        name = "babyai"
    if name not in LOADERS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(sorted(LOADERS))}, babyai_<level>")
    try:
        return importlib.import_module(f"{__name__}.{LOADERS[name]}")
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{LOADERS[name]}":
            raise   # a dependency of that module is missing: its own error says which
        raise DataError(f"dataset {name!r} needs dataset/{LOADERS[name]}.py, which is not installed") from None


def load_tasks(name: str, split: str, data_dir: str | None = None) -> list[dict]:
    """Tasks of dataset `name` for `split` ('train' / 'test'; see each module for extras)."""
    return _module(name).load_tasks(name, split, data_dir)


def dataset_info(name: str) -> dict:
    """How to run a dataset: kind ('gsm8k' / 'math' / 'tool'), n_icl, setup, tools_doc, preload."""
    if name in ANSWER_INFO:
        return dict(ANSWER_INFO[name], setup=None, tools_doc=None, preload=())
    return _module(name).dataset_info(name)
