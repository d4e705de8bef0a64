"""The dataset registry: name lookups, the legacy dataset_info view, the launcher defaults (checked
against distributed_test.sh while it still holds its own copy), and the environment contract."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dataset
from dataset import DataError, agent_defaults, family, spec
from dataset.environment import ToolEnvironment

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "distributed_test.sh"
ALL_NAMES = sorted(dataset.LOADERS) + ["babyai_gotolocal", "babyai_GoToObj"]


def test_lookup():
    assert family("math_level3") == family("math500") == "math"
    assert family("alfworld_heat") == "alfworld" and family("babyai_GoToLocal") == "babyai"
    assert spec("gsm8k").kind == "gsm8k" and spec("babyai").setup == "dataset.babyai:make_env"
    for bad in ("nope", "math_level6", "alfworld_x", "babyai_x"):
        with pytest.raises(DataError) as e:
            spec(bad)
        assert "\n" not in str(e.value) and repr(bad) in str(e.value)
    with pytest.raises(ValueError, match="unknown agent"):
        agent_defaults("gsm8k", "nope")


def test_dataset_info_view():
    assert dataset.dataset_info("gsm8k") == {"kind": "gsm8k", "n_icl": 8, "setup": None,
                                             "tools_doc": None, "preload": ()}
    assert list(dataset.dataset_info("babyai_gotolocal")) == ["kind", "n_icl", "setup", "tools_doc",
                                                              "icl", "preload"]
    assert "icl" not in dataset.dataset_info("alfworld_put")


def test_example_sets_exist():
    from agents.prompts import EXAMPLES
    for s in dataset.families().values():
        assert (s.examples or s.kind) in EXAMPLES, s.family
        assert s.n_icl <= len(EXAMPLES[s.examples or s.kind]), s.family


def test_alfworld_task_types():
    from dataset.alfworld import TASK_TYPES
    from densepolicy.merge import alfworld_type_accuracy
    assert sorted(spec("alfworld").task_types) == sorted(TASK_TYPES.values())
    rows = [{"task_type": t, "score": 1} for t in reversed(spec("alfworld").task_types)]
    assert list(alfworld_type_accuracy(rows)) == [*spec("alfworld").task_types, "mean"]


def test_environments_declare_the_protocol():
    from dataset import alfworld, babyai
    # Declared by subclassing (a Protocol with data members allows no issubclass); the engine
    # tests check isinstance on real episodes.
    assert ToolEnvironment in babyai.Env.__mro__ and ToolEnvironment in alfworld.Env.__mro__


def test_a_missing_engine_breaks_only_its_datasets():
    """Every family is known without any engine installed; the answer datasets still load."""
    engines = ("textworld", "alfworld", "minigrid", "gymnasium")
    checks = ["import dataset",
              "assert sorted(dataset.families()) == ['alfworld', 'babyai', 'gsm8k', 'math']",
              "assert len(dataset.load_tasks('math500', 'test')) == 500"]
    code = "\n".join([f"import sys; sys.modules.update(dict.fromkeys({engines!r}))", *checks])
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---- distributed_test.sh consistency (temporary: until the launcher reads agent_defaults) ----

def _bash_block(start: str, end: str) -> str:
    """The launcher's lines from the one starting with `start` to the next one starting with `end`."""
    text = LAUNCHER.read_text()
    m = re.search(rf"^{re.escape(start)}.*?^{re.escape(end)}[^\n]*$", text, re.S | re.M)
    assert m, f"distributed_test.sh has no block starting {start!r}"
    return m.group(0)


def _bash(script: str, *args: str) -> str:
    return subprocess.run(["bash", "-c", script, "bash", *args], check=True, capture_output=True,
                          text=True).stdout


def test_agent_defaults_match_the_launcher():
    arrays = _bash_block("declare -A CODEACT_ARGS=(", ")") + "\n" + _bash_block("declare -A TREE_ARGS=(", ")")
    printed = _bash(arrays + '\nfor k in "${!CODEACT_ARGS[@]}"; do echo "codeact_agent $k ${CODEACT_ARGS[$k]}"; done'
                    '\nfor k in "${!TREE_ARGS[@]}"; do echo "codeact_agent_tree $k ${TREE_ARGS[$k]}"; done')
    launcher = {(agent, fam): words for agent, fam, *words in (line.split() for line in printed.splitlines())}
    assert {fam for _, fam in launcher} == set(dataset.families())
    for (agent, fam), words in launcher.items():
        assert agent_defaults(fam, agent) == words, (agent, fam)


def test_families_match_the_launcher():
    """Against the script's `case` mapping, or, once that moved to Python, densepolicy/launch.py's."""
    if 'case "$DATASET" in' in LAUNCHER.read_text():
        case = _bash_block('case "$DATASET" in', "esac")

        def launcher_family(name):
            return _bash('die() { echo "unknown"; exit 0; }\nDATASET="$1"\n' + case + '\necho "$FAMILY"',
                         name).strip()
    else:
        launcher_family = pytest.importorskip("densepolicy.launch").dataset_family
    for name in ALL_NAMES:
        assert launcher_family(name) == family(name), name
