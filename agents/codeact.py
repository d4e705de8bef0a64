"""The CodeAct episode: parse a model reply, execute its code in the sandbox, build the observation.

Both agents use `start_episode` and `step`: the plain agent calls `step` in a loop with greedy
decoding; the tree agent calls it once per tree node, with the temperature of the node's label.
An `EpisodeState` is never mutated after it is made, so a tree node can branch into many children.
"""
import asyncio
import re
from dataclasses import dataclass, replace

from agents import prompts
from densepolicy.llm import ContextExceeded, LLMClient
from densepolicy.scoring import is_equivalent

STOP = [prompts.ACTION_END]


@dataclass(frozen=True)
class Task:
    """What an episode needs to know about one task."""
    kind: str                 # "gsm8k" / "math" (answer tasks) or "tool"
    goal: str
    target: str = ""
    setup: str | None = None  # "module:function" building the tool environment in the sandbox
    setup_kwargs: dict | None = None
    tools_doc: str | None = None
    n_icl: int = 0
    icl: str | None = None    # example set (default: kind), e.g. "babyai" for a tool task
    max_turn: int = 10
    max_steps: int = 30
    max_tokens: int = 512
    max_context: int = 8192


@dataclass(frozen=True)
class EpisodeState:
    messages: tuple               # the whole conversation, prompt included
    prompt_len: int               # messages[prompt_len:] is the episode's history
    snapshot: object              # the sandbox state after the last action
    env_state: str | None = None  # initial environment text (tool tasks), kept for pair prompts
    steps: int = 0
    turns: int = 0                # answer attempts
    done: bool = False
    success: bool = False
    end_reason: str = ""
    context_used: int = 0         # tokens of the last prompt + reply, for the context guard
    log: tuple = ()

    @property
    def history(self) -> list[dict]:
        return [dict(m) for m in self.messages[self.prompt_len:]]


@dataclass
class Parsed:
    kind: str               # "action", "answer", "both", "none"
    code: str = ""
    answer: str = ""
    extra_actions: int = 0


_FENCE = re.compile(r"^\s*```[\w+-]*\s*$")


def parse_reply(text: str) -> Parsed:
    """Find the first `Action:` … `End Action` block and any `Answer:` line."""
    lines = text.splitlines()
    starts = [i for i, l in enumerate(lines) if l.lstrip().startswith(prompts.ACTION_START)]
    answer = next((l.strip()[len(prompts.ANSWER_PREFIX):].strip() for l in lines
                   if l.strip().startswith(prompts.ANSWER_PREFIX)), None)
    if starts and answer is not None:
        return Parsed("both")
    if starts:
        first = starts[0]
        head = lines[first].lstrip()[len(prompts.ACTION_START):].strip()
        body = [head] if head else []
        for l in lines[first + 1:]:
            if l.strip().startswith(prompts.ACTION_END) or l.lstrip().startswith(prompts.ACTION_START):
                break
            body.append(l)
        # Small models often wrap code in markdown fences; they are not Python.
        code = "\n".join(l for l in body if not _FENCE.match(l)).strip("\n")
        return Parsed("action", code=code, extra_actions=len(starts) - 1)
    if answer is not None:
        return Parsed("answer", answer=answer)
    return Parsed("none")


def observation_of(output: str) -> str:
    """An action's output as the next user turn: trimmed, because Llama-3's chat template trims
    every message when serving while LLaMA-Factory trains on the text as stored; a hint when the
    code printed nothing."""
    return output.strip() or prompts.EMPTY_OUTPUT_HINT


def normalise_reply(text: str, parsed: Parsed) -> str:
    """The assistant turn as stored: the reply up to its first action, closed by `End Action`."""
    if parsed.kind != "action":
        return text.strip()
    lines = text.splitlines()
    first = next(i for i, l in enumerate(lines) if l.lstrip().startswith(prompts.ACTION_START))
    end = next((i for i in range(first + 1, len(lines))
                if lines[i].strip().startswith(prompts.ACTION_END)
                or lines[i].lstrip().startswith(prompts.ACTION_START)), len(lines))
    return "\n".join(lines[:end]).rstrip() + "\n" + prompts.ACTION_END


async def start_episode(pool, task: Task) -> EpisodeState:
    snapshot, info = await pool.new_episode(task.setup, task.setup_kwargs)
    env_state = info.get("observation")
    messages = prompts.build_messages(task.kind, task.goal, n_icl=task.n_icl, icl=task.icl,
                                      tools_doc=task.tools_doc, env_state=env_state)
    return EpisodeState(messages=tuple(messages), prompt_len=len(messages), snapshot=snapshot,
                        env_state=env_state)


def _finish(state: EpisodeState, **changes) -> EpisodeState:
    return replace(state, done=True, **changes)


async def step(llm: LLMClient, pool, task: Task, state: EpisodeState,
               temperature: float = 0.0) -> EpisodeState:
    """One model reply and its consequence. Returns a new state; `state` is left untouched."""
    if state.done:
        return state
    if state.context_used + task.max_tokens > task.max_context:
        return _finish(state, end_reason="context_exhausted")
    try:
        [reply] = await llm.chat(list(state.messages), temperature=temperature,
                                 max_tokens=task.max_tokens, stop=STOP)
    except ContextExceeded:
        return _finish(state, end_reason="context_exhausted")
    parsed = parse_reply(reply.text)
    entry = {"temperature": temperature, "reply": parsed.kind, "finish_reason": reply.finish_reason,
             "completion_tokens": reply.completion_tokens}
    steps, turns = state.steps + 1, state.turns
    success, done, end_reason, snapshot = False, False, "", state.snapshot

    if parsed.kind == "action":
        snapshot, result = await pool.run(state.snapshot, parsed.code)
        observation = observation_of(result.output)
        if parsed.extra_actions:
            observation += "\n" + prompts.MULTIPLE_ACTIONS_REMINDER
        entry.update(timed_out=result.timed_out, crashed=result.crashed)
        if result.sandbox_error:
            entry["sandbox_error"] = True
        if result.status:
            success = bool(result.status.get("success"))
            done = success or bool(result.status.get("done"))
            end_reason = "solved" if success else ("env_done" if done else "")
    elif parsed.kind == "answer" and task.kind != "tool":
        turns += 1
        # Symbolic checks may take seconds; keep the event loop serving the other episodes.
        success = await asyncio.to_thread(is_equivalent, parsed.answer, task.target)
        entry["answer"] = parsed.answer
        observation = "" if success else prompts.INCORRECT_ANSWER
        if success:
            done, end_reason = True, "solved"
        elif turns >= task.max_turn:
            done, end_reason = True, "max_turn"
    elif parsed.kind == "both":
        observation = prompts.BOTH_ACTION_AND_ANSWER
    else:
        observation = prompts.FORMAT_REMINDER

    messages = state.messages + ({"role": "assistant", "content": normalise_reply(reply.text, parsed)},)
    if not done:
        messages += ({"role": "user", "content": observation},)
        if steps >= task.max_steps:
            done, end_reason = True, "max_steps"
    return replace(state, messages=messages, snapshot=snapshot, steps=steps, turns=turns,
                   done=done, success=success, end_reason=end_reason,
                   context_used=reply.prompt_tokens + reply.completion_tokens + len(observation) // 3,
                   log=state.log + (entry,))
