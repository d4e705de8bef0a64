"""Parsing model replies into the CodeAct protocol (SPEC §1), and what a step logs when the sandbox fails."""
import asyncio

from agents.codeact import Task, normalise_reply, parse_reply, start_episode, step
from densepolicy import sandbox
from densepolicy.llm import Completion
from densepolicy.sandbox import SandboxPool


def test_action_block():
    p = parse_reply("Let me compute.\nAction:\nx = 2 + 3\nprint(x)\nEnd Action")
    assert (p.kind, p.code, p.extra_actions) == ("action", "x = 2 + 3\nprint(x)", 0)


def test_action_cut_by_the_stop_string_and_fenced():
    # The server stops before "End Action"; models also like markdown fences.
    p = parse_reply("Action:\n```python\nprint(1)\n```\n")
    assert (p.kind, p.code) == ("action", "print(1)")
    assert normalise_reply("Think.\nAction:\n```python\nprint(1)\n```\n", p).endswith("```\nEnd Action")


def test_code_on_the_action_line():
    assert parse_reply("Action: print(6 * 7)").code == "print(6 * 7)"


def test_several_actions_use_the_first():
    text = "Action:\nprint(1)\nEnd Action\nAction:\nprint(2)\nEnd Action"
    p = parse_reply(text)
    assert (p.kind, p.code, p.extra_actions) == ("action", "print(1)", 1)
    assert normalise_reply(text, p) == "Action:\nprint(1)\nEnd Action"


def test_answer_and_invalid_replies():
    assert parse_reply("So the total is 18.\nAnswer: 18").answer == "18"
    assert parse_reply("Answer: \\frac{1}{2}").kind == "answer"
    assert parse_reply("Action:\nprint(1)\nEnd Action\nAnswer: 3").kind == "both"
    assert parse_reply("I think it's 18.").kind == "none"
    assert parse_reply("").kind == "none"


def test_a_step_the_sandbox_failed_is_logged_as_such(monkeypatch, tmp_path):
    """The real sandbox, a scripted reply: an action whose state cannot be rebuilt (its set-up now
    hangs) is logged with sandbox_error, which pair building drops (tests/test_pairs.py)."""
    monkeypatch.setattr(sandbox, "SETUP_TIMEOUT", 2.0)
    flag = tmp_path / "hang"

    class Scripted:
        async def chat(self, messages, **kwargs):
            return [Completion("Action:\nincrement()\nEnd Action", "stop", 10, 5)]

    task = Task(kind="tool", goal="bring the counter to 3", setup="tests.sandbox_env_fixture:hang_while",
                setup_kwargs={"flag": str(flag)}, max_steps=5)

    async def main():
        async with SandboxPool(isolate=False) as pool:
            state = await start_episode(pool, task)
            state = await step(Scripted(), pool, task, state)
            pool.release(state.snapshot)
            pool.release(state.snapshot.parent)
            flag.touch()
            state = await step(Scripted(), pool, task, state)
            return state

    state = asyncio.run(main())
    first, second = state.log
    assert "sandbox_error" not in first and second["sandbox_error"] and second["crashed"]
    assert state.messages[-1]["content"].startswith("SandboxError: ")
