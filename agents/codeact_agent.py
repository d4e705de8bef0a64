"""Plain CodeAct agent (downstream evaluation): greedy decoding until solved or out of budget.

    python -m agents.codeact_agent --model M --base_url URL --dataset gsm8k [--num_shards N --shard_id I]
"""
import sys

from agents import runner
from agents.codeact import start_episode, step

NAME = "codeact_agent"
DEFAULT_SPLIT = "test"
COLUMNS = ["score", "steps", "turns", "history", "log_infos"]


def add_args(parser):
    parser.add_argument("--max_steps", type=int, default=30, help="model replies per episode")


def max_steps(args) -> int:
    return args.max_steps


def run_name(args) -> str:
    return f"greedy_{args.max_turn}_{args.max_steps}"


async def solve(row: dict, task, ctx) -> dict:
    state = await start_episode(ctx.pool, task)
    while not state.done:
        state = await step(ctx.llm, ctx.pool, task, state, temperature=0.0)
    ctx.pool.release(state.snapshot)
    return {**row, "score": float(state.success), "steps": state.steps, "turns": state.turns,
            "history": state.history,
            "log_infos": {"end_reason": state.end_reason, "env_state": state.env_state,
                          "steps": list(state.log)}}


if __name__ == "__main__":
    raise SystemExit(runner.main(sys.modules[__name__]))
