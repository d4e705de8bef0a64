"""The dataset registry: name lookups, the legacy dataset_info view, the agents' defaults, and the
environment contract."""
import subprocess
import sys

import pytest

import dataset
from dataset import DataError, agent_defaults, family, spec
from dataset.environment import ToolEnvironment

from densepolicy.paths import ROOT
ALL_NAMES = dataset.names() + ["babyai_gotolocal", "babyai_GoToObj"]


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
    from densepolicy.merge import task_type_accuracy
    assert sorted(spec("alfworld").task_types) == sorted(TASK_TYPES.values())
    rows = [{"task_type": t, "score": 1} for t in reversed(spec("alfworld").task_types)]
    assert list(task_type_accuracy(rows, spec("alfworld").task_types)) == [*spec("alfworld").task_types, "mean"]


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


def test_agent_defaults_are_the_spec_settings():
    """SPEC §4 (evaluation) and §5 (trees: B, W, D, M); the launcher puts these first."""
    assert agent_defaults("gsm8k", "codeact_agent") == "--n_icl 8 --max_turn 10 --max_steps 30".split()
    assert agent_defaults("math_level1", "codeact_agent_tree") == (
        "--n_icl 1 --max_turn 10 --base 10 --window_size 8 --max_steps 8 --max_sample_number 512".split())
    assert agent_defaults("alfworld_cool", "codeact_agent_tree") == (
        "--n_icl 0 --base 8 --window_size 8 --max_steps 30 --max_sample_number 512".split())
    out = subprocess.run([sys.executable, "-m", "dataset"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    for name in dataset.families():
        for agent in dataset.AGENTS:
            assert f"  {agent:<19} {' '.join(agent_defaults(name, agent))}\n" in out, (name, agent)
