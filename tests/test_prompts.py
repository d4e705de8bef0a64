"""The CodeAct prompt: structure, and in-context examples that do not lie."""
import contextlib
import io

import pytest

from agents import prompts
from agents.prompts import build_messages
from densepolicy.scoring import is_equivalent

ALL_EXAMPLES = [("gsm8k", i, ex) for i, ex in enumerate(prompts.GSM8K_EXAMPLES)] + \
               [("math", i, ex) for i, ex in enumerate(prompts.MATH_EXAMPLES)]


def _alternates(msgs):
    return [m["role"] for m in msgs] == ["user", "assistant"] * (len(msgs) // 2) + ["user"]


def test_protocol_constants():
    assert prompts.ACTION_START == "Action:" and prompts.ACTION_END == "End Action"
    assert prompts.ANSWER_PREFIX == "Answer:"
    assert prompts.INCORRECT_ANSWER == "Your answer is incorrect."
    for text in (prompts.FORMAT_REMINDER, prompts.BOTH_ACTION_AND_ANSWER,
                 prompts.MULTIPLE_ACTIONS_REMINDER, prompts.EMPTY_OUTPUT_HINT):
        assert isinstance(text, str) and text


def test_example_counts():
    assert len(prompts.GSM8K_EXAMPLES) == 8 and len(prompts.MATH_EXAMPLES) == 1


@pytest.mark.parametrize("kind,n_icl", [("gsm8k", 8), ("gsm8k", 3), ("math", 1)])
def test_structure_with_examples(kind, n_icl):
    msgs = build_messages(kind, "What is 2+2?", n_icl=n_icl)
    assert _alternates(msgs)
    assert msgs[0]["content"].startswith(prompts.instruction(kind))
    assert prompts.ACTION_START in msgs[0]["content"] and prompts.ANSWER_PREFIX in msgs[0]["content"]
    assert msgs[-1]["content"].startswith("Now, let's move on to the next task")
    assert msgs[-1]["content"].endswith("What is 2+2?")
    # one task-opening user turn per example (the first shares the instruction's message)
    assert sum("Task:\n" in m["content"] for m in msgs[:-1] if m["role"] == "user") == n_icl
    answers = [m for m in msgs if m["role"] == "assistant" and prompts.ANSWER_PREFIX in m["content"]]
    assert len(answers) == n_icl


def test_every_prompt_message_is_trimmed():
    """Llama-3's chat template trims each message and LLaMA-Factory does not: stored text must be
    trimmed already for training and serving to agree (see test_treedpo's Llama-3 test)."""
    from dataset import dataset_info
    for name in ("gsm8k", "math", "babyai_GoToRedBallGrey", "alfworld_put"):
        info = dataset_info(name)
        for n_icl in (0, 2, 8):
            msgs = build_messages(info["kind"], "  a goal \n", n_icl=n_icl, icl=info.get("icl"),
                                  tools_doc=info.get("tools_doc"), env_state="You see a wall.\n")
            assert all(m["content"] == m["content"].strip() for m in msgs), (name, n_icl)
    from agents.codeact import observation_of
    assert observation_of("42 7\n") == "42 7" and observation_of(" \n") == prompts.EMPTY_OUTPUT_HINT


def test_n_icl_caps_and_zero():
    assert build_messages("math", "g", n_icl=5) == build_messages("math", "g", n_icl=1)
    assert len(build_messages("gsm8k", "g", n_icl=0)) == 1


def test_without_examples_merges_instruction_and_goal():
    for kind in ("gsm8k", "math"):
        msgs = build_messages(kind, "Find x.", n_icl=8, with_examples=False)
        assert len(msgs) == 1 and msgs[0]["role"] == "user"
        assert msgs[0]["content"].startswith(prompts.instruction(kind))
        assert msgs[0]["content"].endswith("Task:\nFind x.")


def test_tool_prompt():
    msgs = build_messages("tool", "put a mug on the table", n_icl=0,
                          tools_doc="goto(recep): go to a receptacle", env_state="You are in a kitchen.")
    assert len(msgs) == 1
    text = msgs[0]["content"]
    assert "goto(recep)" in text and prompts.ANSWER_PREFIX not in text
    assert text.index("You are in a kitchen.") < text.index("put a mug on the table")
    with pytest.raises(ValueError):
        build_messages("chess", "g", n_icl=0)


def _run(code, ns):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        exec(code, ns)
    return buf.getvalue()


@pytest.mark.parametrize("kind,i,ex", ALL_EXAMPLES)
def test_examples_do_not_lie(kind, i, ex):
    ns = {}   # one namespace per example: the interpreter is persistent within an episode
    acts = [s for s in ex["steps"] if s[0] == "act"]
    final = ex["steps"][-1]
    assert acts and final[0] == "answer" and all(s[0] == "act" for s in ex["steps"][:-1])
    for _, thought, code, output in acts:
        assert _run(code, ns).rstrip("\n") == output
    assert is_equivalent(final[2], str(ns[ex["value"]]))


@pytest.mark.parametrize("kind,i,ex", ALL_EXAMPLES)
def test_example_turns_follow_protocol(kind, i, ex):
    turns = prompts.example_turns(ex)
    assert [m["role"] for m in turns] == ["user", "assistant"] * (len(turns) // 2)
    for m in turns:
        if m["role"] != "assistant":
            continue
        lines = m["content"].splitlines()
        has_action = any(l.startswith(prompts.ACTION_START) for l in lines)
        has_answer = any(l.startswith(prompts.ANSWER_PREFIX) for l in lines)
        assert has_action != has_answer   # never both, never neither
        if has_action:
            assert lines[-1] == prompts.ACTION_END


@pytest.mark.parametrize("i,ex", list(enumerate(prompts.BABYAI_EXAMPLES)))
def test_babyai_examples_replay_in_the_real_environment(i, ex):
    from dataset.babyai import Env
    env = Env(ex["level"], ex["seed"])
    assert env.describe() == ex["env_state"]
    tools = {name: getattr(env, name) for name in ("turn_left", "turn_right", "move_forward", "go_to",
                                                  "pick_up", "drop", "toggle")}
    for kind, thought, code, output in ex["steps"]:
        assert kind == "act" and thought
        assert _run(code, tools).rstrip("\n") == output
    assert env.reward > 0   # every example ends with the mission completed


def test_tool_examples_keep_alternation_and_end_on_the_task():
    msgs = build_messages("tool", "go to the red ball", n_icl=2, icl="babyai", tools_doc="go_to(obj)",
                          env_state="You see no objects.")
    assert _alternates(msgs)
    assert msgs[0]["content"].startswith(prompts.instruction("tool", "go_to(obj)"))
    assert msgs[-1]["content"].endswith("You see no objects.\n\nTask:\ngo to the red ball")
    assert sum(m["content"].count("Task:\n") for m in msgs) == 3
    assert build_messages("tool", "g", n_icl=0, icl="babyai") == build_messages("tool", "g", n_icl=0)
