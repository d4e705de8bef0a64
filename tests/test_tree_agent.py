"""The tree agent's node cache, with a scripted policy (pure logic) and the real sandbox:
every node's action is generated exactly once, however many rollouts pass through it."""
import argparse
import asyncio
import collections

from agents import codeact_agent_tree
from agents.codeact import Task
from agents.runner import Context
from densepolicy.llm import Completion
from densepolicy.sandbox import SandboxPool
from densepolicy.tree import parse_run_key


class ScriptedLLM:
    """Answers from the conversation so far: the reply depends on the path, so a node generated
    twice would be visible as a second call with the same conversation."""

    def __init__(self):
        self.calls = collections.Counter()

    async def chat(self, messages, *, temperature=0.0, max_tokens=512, stop=None, seed=None, n=1):
        depth = sum(m["role"] == "assistant" for m in messages)
        key = (tuple(m["content"] for m in messages), temperature)
        self.calls[key] += 1
        await asyncio.sleep(0.01)  # let concurrent rollouts race for the same node
        if depth == 0:
            text = f"Action:\nx = {int(temperature * 10)}\nprint(x)"
        else:
            text = "Answer: 7" if temperature in (0.0, 1.0) else "Answer: 3"
        return [Completion(text, "stop", 10, 5)]


def test_each_node_is_generated_once():
    args = argparse.Namespace(base=3, max_steps=3, window_size=3, max_sample_number=2,
                              max_rollouts=30, max_empty_rounds=50, seed=0)
    task = Task(kind="gsm8k", goal="What is 3 + 4?", target="7", max_turn=2, max_steps=3)
    llm = ScriptedLLM()

    async def go():
        async with SandboxPool() as pool:
            ctx = Context(args, llm, pool, collections.Counter())
            return await codeact_agent_tree.solve({"index": 0, "input": task.goal, "target": "7"}, task, ctx)

    row = asyncio.run(go())
    assert llm.calls and max(llm.calls.values()) == 1
    assert len(llm.calls) == row["log_infos"]["nodes"]
    # Labels 0 and 1 (temperatures 0.0 and 1.0) answer 7, label 2 (0.5) answers 3: a run ends at
    # its first right answer, or after its second wrong one (max_turn 2) at depth 3.
    for key, outcome in row["res_cur"].items():
        labels = parse_run_key(key)
        if labels[1] != 2:
            assert len(labels) == 2 and outcome == 1
        else:
            assert len(labels) == 3 and outcome == (labels[2] != 2)
        assert row["history"][key][1]["content"] == f"{int(row['policies'][key][0] * 10)}"  # stored trimmed
    assert row["score"] == 1.0 and row["log_infos"]["contrast_pairs"] >= 1
    assert row["log_infos"]["examples"] == {"set": "gsm8k", "n": task.n_icl}
