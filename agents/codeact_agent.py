"""Plain CodeAct agent (downstream evaluation): greedy decoding until solved or out of budget.

    python -m agents.codeact_agent --model M --base_url URL --dataset gsm8k [--num_shards N --shard_id I]

With `--temperature T --samples K` every task is played K times at temperature T instead (sampled
accuracy, a finer measure of a shifted policy than the greedy one): `score` is then the share of
the K episodes solved, and `sample_scores`, `history` and `log_infos` hold one entry per episode.
"""
import asyncio
import sys

from agents import runner
from agents.codeact import start_episode, step

NAME = "codeact_agent"
DEFAULT_SPLIT = "test"
COLUMNS = ["score", "steps", "turns", "history", "log_infos", "sample_scores"]


def add_args(parser):
    parser.add_argument("--max_steps", type=int, default=30, help="model replies per episode")
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (the original)")
    parser.add_argument("--samples", type=int, default=1, help="episodes per task (with --temperature > 0)")


def check_args(args, parser):
    if args.temperature < 0 or args.samples < 1:
        parser.error("--temperature must be >= 0 and --samples >= 1")
    if args.temperature == 0 and args.samples != 1:
        parser.error(f"--samples {args.samples} needs --temperature > 0 (greedy episodes are all the same)")


def run_name(args) -> str:
    if args.temperature == 0:
        return f"greedy_{args.max_turn}_{args.max_steps}"
    return f"temperature{args.temperature:g}x{args.samples}_{args.max_turn}_{args.max_steps}"


async def episode(task, ctx, temperature: float):
    state = await start_episode(ctx.pool, task)
    while not state.done:
        state = await step(ctx.llm, ctx.pool, task, state, temperature=temperature)
    ctx.pool.release(state.snapshot)
    return state


def _log_info(state) -> dict:
    return {"end_reason": state.end_reason, "env_state": state.env_state, "steps": list(state.log)}


async def solve(row: dict, task, ctx) -> dict:
    args = ctx.args
    if args.temperature == 0:
        state = await episode(task, ctx, 0.0)
        return {**row, "score": float(state.success), "steps": state.steps, "turns": state.turns,
                "history": state.history, "log_infos": _log_info(state), "sample_scores": [float(state.success)]}
    states = await asyncio.gather(*[episode(task, ctx, args.temperature) for _ in range(args.samples)])
    scores = [float(s.success) for s in states]
    return {**row, "score": sum(scores) / len(scores), "steps": [s.steps for s in states],
            "turns": [s.turns for s in states], "history": [s.history for s in states],
            "log_infos": [_log_info(s) for s in states], "sample_scores": scores}


if __name__ == "__main__":
    raise SystemExit(runner.main(sys.modules[__name__]))
