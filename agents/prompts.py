"""The CodeAct prompt: protocol markers, instruction text, in-context examples, feedback messages.

All text here is written for this project. `build_messages` returns OpenAI chat messages whose
roles strictly alternate user/assistant and end on a user turn: the instruction shares the first
user message with the first example's task (or with the goal when there are no examples), so that
chat templates that insist on alternation, and the [user, assistant] history pairs of the
preference data, both work. `pair_prompt` is the prompt of a preference pair.
"""
from dataset import dataset_info

# Protocol markers, matched at line starts by the reply parser.
ACTION_START = "Action:"
ACTION_END = "End Action"
ANSWER_PREFIX = "Answer:"

# Fixed feedback texts (the observation the model sees).
INCORRECT_ANSWER = "Your answer is incorrect."
FORMAT_REMINDER = (
    "Your reply has neither an action nor an answer. To run code, write it between a line "
    f"starting with \"{ACTION_START}\" and a line \"{ACTION_END}\". To submit a final answer "
    f"(question tasks), write a line \"{ANSWER_PREFIX} <your answer>\".")
BOTH_ACTION_AND_ANSWER = (
    "Your reply has both an action and an answer, so neither was used. In each reply either run "
    "code or give the final answer, never both.")
MULTIPLE_ACTIONS_REMINDER = (
    "Note: your reply had more than one action; only the first one was run. Write one action per reply.")
EMPTY_OUTPUT_HINT = "[The code ran but printed nothing. Use print() to see values.]"

NEXT_TASK = "Now, let's move on to the next task. The instructions are the same as for the previous task."

_INTRO = ("You solve tasks by thinking briefly and writing Python code.\n\n"
          "In each reply, first explain your reasoning in a sentence or two, then ")
_RUN = (f"write a line \"{ACTION_START}\", then Python code, then a line \"{ACTION_END}\". The code "
        "runs in a persistent Python interpreter (variables and imports stay defined across actions), "
        "and what it prints (output and errors) comes back to you as the next message. Print every "
        "value you need to see.")

_ANSWERING = f"""
- Submit: write a line "{ANSWER_PREFIX} <final answer>" with only the final answer on it.{{form}}

Never run code and submit in the same reply. If your answer is wrong you are told so and may try \
again. Do not use input() or exit()."""

_ANSWER_FORM = {
    "gsm8k": " The answer is a number, without units.",
    "math": (" Give the exact answer in simplest form, in LaTeX where needed (e.g. \\frac{3}{4}, "
             "2\\sqrt{5}, (1, -2)), without \\boxed{}."),
}

_TOOLS = """

Write one action per reply; keep calling the tools until the goal is achieved. \
Do not use input() or exit(). These functions are defined in the interpreter; each call acts \
in the environment and prints what happens:
{tools}"""


def instruction(dataset_kind: str, tools_doc: str | None = None) -> str:
    """The instruction text for an answer task ('gsm8k' / 'math') or a tool task ('tool')."""
    if dataset_kind in _ANSWER_FORM:
        text = _INTRO + "do exactly one of these:\n- Run code: " + _RUN + \
            _ANSWERING.format(form=_ANSWER_FORM[dataset_kind])
    elif dataset_kind == "tool":
        text = _INTRO + "run code: " + _RUN
    else:
        raise ValueError(f"unknown dataset_kind {dataset_kind!r}; expected gsm8k, math or tool")
    if tools_doc:
        text += _TOOLS.format(tools=tools_doc.strip())
    return text


# ---------------------------------------------------------------- in-context examples
# An example is a question plus steps: ("act", thought, code, printed output) and a final
# ("answer", thought, answer). `value` names the variable holding the answer's value, so the
# tests can check the written answer against what the code computes.

GSM8K_EXAMPLES = [
    dict(question="A bakery makes 24 muffins each morning and 18 each afternoon. Muffins are sold in "
                  "boxes of 6. How many boxes does the bakery fill in one day?",
         steps=[("act", "Add the two batches, then divide by the box size.",
                 "muffins = 24 + 18\nboxes = muffins // 6\nprint(muffins, boxes)", "42 7"),
                ("answer", "42 muffins fill 7 boxes.", "7")],
         value="boxes"),
    dict(question="A jacket costs $80. It is on sale for 25% off, and Lena pays 10% sales tax on the "
                  "sale price. How many dollars does she pay?",
         steps=[("act", "Take 25% off, then add 10% tax; round to cents.",
                 "price = 80 * (1 - 0.25)\ntotal = round(price * 1.10, 2)\nprint(price, total)",
                 "60.0 66.0"),
                ("answer", "The sale price is $60 and with tax she pays $66.", "66")],
         value="total"),
    dict(question="A savings jar holds $15. In week 1 Ana adds $8, and every week after that she adds "
                  "$8 more than the week before. How much money is in the jar after 5 weeks?",
         steps=[("act", "In week k she adds 8*k dollars; sum the five weeks.",
                 "total = 15\nfor week in range(1, 6):\n    total += 8 * week\nprint(total)", "135"),
                ("answer", "The jar holds $135.", "135")],
         value="total"),
    dict(question="An empty tank holds 450 liters. A pipe fills it at 15 liters per minute while a "
                  "leak drains 5 liters per minute. How many minutes does it take to fill the tank?",
         steps=[("act", "The tank gains 15 - 5 liters per minute.",
                 "minutes = 450 / (15 - 5)\nprint(minutes)", "45.0"),
                ("answer", "It takes 45 minutes.", "45")],
         value="minutes"),
    dict(question="Maya has 3 times as many stickers as Ben, and together they have 64. Then Maya "
                  "gives Ben 10 stickers. How many stickers does Ben have now?",
         steps=[("act", "Ben has one part out of 1 + 3 = 4 equal parts of 64.",
                 "ben = 64 / 4\nmaya = 3 * ben\nprint(ben, maya)", "16.0 48.0"),
                ("act", "Ben started with 16; now he receives 10 more.",
                 "ben = ben + 10\nprint(ben)", "26.0"),
                ("answer", "Ben now has 26 stickers.", "26")],
         value="ben"),
    dict(question="A school buys 7 packs of 36 pencils and gives 5 pencils to each of its 42 "
                  "students. How many pencils are left over?",
         steps=[("act", "Pencils bought minus pencils handed out.",
                 "bought = 7 * 36\ngiven = 5 * 42\nleft = bought - given\nprint(bought, given, left)",
                 "252 210 42"),
                ("answer", "42 pencils are left.", "42")],
         value="left"),
    dict(question="Sam earned $240. He spent 1/3 of it on a helmet and then 1/4 of what remained "
                  "on books. How many dollars does he have left?",
         steps=[("act", "Remove a third, then a quarter of the remainder.",
                 "earned = 240\nrest = earned - earned / 3\nleft = rest - rest / 4\nprint(rest, left)",
                 "160.0 120.0"),
                ("answer", "After the helmet he has $160, and after the books $120.", "120")],
         value="left"),
    dict(question="The high temperatures on four days were 68, 72, 75 and 81 degrees. What high on "
                  "the fifth day would make the five-day average exactly 75 degrees?",
         steps=[("act", "The five days must sum to 5 * 75.",
                 "temps = [68, 72, 75, 81]\nneeded = 5 * 75 - sum(temps)\nprint(needed)", "79"),
                ("answer", "The fifth day needs a high of 79 degrees.", "79")],
         value="needed"),
]

MATH_EXAMPLES = [
    dict(question="Solve for $x$: $\\frac{2}{3}x + \\frac{1}{4} = \\frac{5}{6}$.",
         steps=[("act", "Subtract 1/4 from both sides, then divide by 2/3; exact fractions avoid "
                        "rounding.",
                 "from fractions import Fraction\n"
                 "x = (Fraction(5, 6) - Fraction(1, 4)) / Fraction(2, 3)\n"
                 "print(x)\n"
                 "print(Fraction(2, 3) * x + Fraction(1, 4) == Fraction(5, 6))",
                 "7/8\nTrue"),
                ("answer", "x = 7/8, and substituting it back checks out.", "\\frac{7}{8}")],
         value="x"),
]

# Tool-task examples also name the environment they were recorded in (`level`, `seed`: a seed
# outside the train and test ranges), so a test can replay them and check every observation.
BABYAI_EXAMPLES = [
    dict(level="GoToRedBallGrey", seed=5278, question="go to the red ball",
         env_state="You see:\n- grey box 1: 2 steps ahead and 1 to the right\n"
                   "- grey key 1: 2 steps ahead and 3 to the right\n"
                   "Walls: 1 step to the left, 3 steps ahead.\nIn front of you: nothing.\n"
                   "You are carrying: nothing.",
         steps=[("act", "I do not see a red ball yet, so I turn to look around.", "turn_left()",
                 "You turn left.\nYou see:\n- red ball 1: 3 steps to the left\n"
                 "Walls: 1 step ahead, 3 steps to the right.\nIn front of you: a wall.\n"
                 "You are carrying: nothing."),
                ("act", "Now I see red ball 1, so I go to it.", 'go_to("red ball 1")',
                 "You go to the red ball 1. You have completed the mission!\nYou see:\n"
                 "- red ball 1: 1 step ahead\n- grey ball 2: 3 steps to the left\n"
                 "Walls: 1 step to the right, 2 steps ahead.\nIn front of you: red ball 1.\n"
                 "You are carrying: nothing.")]),
    dict(level="GoToRedBallGrey", seed=5011, question="go to the red ball",
         env_state="You see:\n- grey box 3: 2 steps ahead and 2 to the left\n"
                   "- red ball 1: 2 steps ahead and 3 to the right\n"
                   "Walls: 3 steps to the left, 3 steps ahead.\nIn front of you: nothing.\n"
                   "You are carrying: nothing.",
         steps=[("act", "Red ball 1 is in view, so I go to it.", 'go_to("red ball 1")',
                 "You go to the red ball 1. You have completed the mission!\nYou see:\n"
                 "- red ball 1: 1 step ahead\n- grey box 1: 1 step ahead and 3 to the right\n"
                 "Walls: 1 step to the left, 2 steps ahead.\nIn front of you: red ball 1.\n"
                 "You are carrying: nothing.")]),
]

# Keyed by example set; which set a dataset uses is its spec's `examples` (dataset/__init__.py).
# "tool" (none) is the fallback of a tool dataset without a set, as tree rows record it.
EXAMPLES = {"gsm8k": GSM8K_EXAMPLES, "math": MATH_EXAMPLES, "babyai": BABYAI_EXAMPLES, "tool": []}


def task_text(goal: str, env_state: str | None = None) -> str:
    """How a task is shown: the environment's state (tool tasks), then the goal."""
    state = f"{env_state.strip()}\n\n" if env_state else ""
    return f"{state}Task:\n{goal.strip()}"


def example_turns(example: dict) -> list[dict]:
    """One example as alternating messages, starting with the user's task."""
    msgs = [{"role": "user", "content": task_text(example["question"], example.get("env_state"))}]
    for step in example["steps"]:
        if step[0] == "act":
            _, thought, code, output = step
            msgs.append({"role": "assistant", "content": f"{thought}\n{ACTION_START}\n{code}\n{ACTION_END}"})
            msgs.append({"role": "user", "content": output})
        else:
            _, thought, answer = step
            msgs.append({"role": "assistant", "content": f"{thought}\n{ANSWER_PREFIX} {answer}"})
    return msgs


def build_messages(dataset_kind: str, goal: str, *, n_icl: int, tools_doc: str | None = None,
                   env_state: str | None = None, with_examples: bool = True,
                   icl: str | None = None) -> list[dict]:
    """The prompt of one episode. `n_icl` examples of set `icl` (default: the kind) are used,
    capped at the number written; `with_examples=False` drops them (preference prompts, SPEC §8)."""
    head = instruction(dataset_kind, tools_doc)
    examples = EXAMPLES[icl or dataset_kind][:max(n_icl, 0)] if with_examples else []
    if not examples:
        return [{"role": "user", "content": f"{head}\n\n{task_text(goal, env_state)}"}]
    msgs = [{"role": "user", "content": head}]
    for ex in examples:
        _append(msgs, example_turns(ex))
    _append(msgs, [{"role": "user", "content": f"{NEXT_TASK}\n\n{task_text(goal, env_state)}"}])
    return msgs


def _append(msgs: list, turns: list):
    """Extend keeping roles alternating: a user turn after a user turn (the instruction, or a tool
    example that ends on its last observation) joins it."""
    if msgs[-1]["role"] == turns[0]["role"] == "user":
        msgs[-1] = {"role": "user", "content": f"{msgs[-1]['content']}\n\n{turns[0]['content']}"}
        turns = turns[1:]
    msgs += turns


PAIR_EXAMPLES = ("none", "sampled")


def pair_prompt(row, dataset, env_state=None, examples="none"):
    """The preference prompt. "none": instruction and goal in one user turn (SPEC §8); "sampled":
    the prompt the rollouts saw, in-context examples included, from the example set the tree row
    records (ValueError when it records none)."""
    info = dataset_info(dataset)
    if examples == "none":
        return build_messages(info["kind"], row["input"], n_icl=0, tools_doc=info.get("tools_doc"),
                              env_state=env_state, with_examples=False)
    used = (row.get("log_infos") or {}).get("examples") if isinstance(row.get("log_infos"), dict) else None
    if not isinstance(used, dict) or not isinstance(used.get("n"), int):
        raise ValueError("log_infos records no example set (trees sampled before it was recorded); "
                         "use --pair_examples none")
    return build_messages(info["kind"], row["input"], n_icl=used["n"], icl=used.get("set"),
                          tools_doc=info.get("tools_doc"), env_state=env_state)
