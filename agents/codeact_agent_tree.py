"""Tree sampler (`codeact_agent_tree`): a dense tree of CodeAct trajectories per task (SPEC §5).

    python -m agents.codeact_agent_tree --model M --base_url URL --dataset gsm8k \
        --base 10 --window_size 16 --max_steps 32 --max_sample_number 256

Every tree node is generated once and cached: rollouts sharing a prefix share its actions, and
two rollouts racing for the same new node await one generation. A node's sandbox state is a
parked forked process, so branching costs a fork, not a replay of the history.
"""
import asyncio
import sys

from agents import runner
from agents.codeact import start_episode, step
from densepolicy.tree import TreeSearch, label_temperature, run_key, run_tree

NAME = "codeact_agent_tree"
DEFAULT_SPLIT = "train"
COLUMNS = ["score", "res", "res_cur", "full_index", "steps", "history", "policies", "log_infos"]


def add_args(parser):
    parser.add_argument("--base", type=int, default=10, help="labels per node (B)")
    parser.add_argument("--max_steps", type=int, default=8, help="tree depth (D)")
    parser.add_argument("--window_size", type=int, default=8, help="rollouts per round (W)")
    parser.add_argument("--max_sample_number", type=int, default=512, help="target contrast pairs (M)")
    parser.add_argument("--contrastive_method", default="temperature", choices=["temperature"])
    parser.add_argument("--max_rollouts", type=int, default=1000)
    parser.add_argument("--max_empty_rounds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the tree search's choices")


def run_name(args) -> str:
    return f"{args.contrastive_method}_{args.max_sample_number}_{args.base}_{args.max_steps}"


async def solve(row: dict, task, ctx) -> dict:
    args = ctx.args
    root = await start_episode(ctx.pool, task)
    nodes: dict[tuple, asyncio.Future] = {(): asyncio.get_running_loop().create_future()}
    nodes[()].set_result(root)

    async def expand(labels):
        parent = await node(labels[:-1])
        return await step(ctx.llm, ctx.pool, task, parent, temperature=label_temperature(labels[-1]))

    def node(labels) -> asyncio.Future:
        if labels not in nodes:
            nodes[labels] = asyncio.ensure_future(expand(labels))
        return nodes[labels]

    finished = {}  # run key -> final state

    async def rollout(labels):
        for k in range(1, len(labels) + 1):
            state = await node(labels[:k])
            if state.done:
                break
        # Depth D always ends the episode (Task.max_steps = D), so the loop stops on a done node.
        run_index = labels[:k]
        finished[run_key(run_index)] = (labels, state)
        ctx.counters["rollouts"] += 1
        return run_index, int(state.success), state.steps

    search = TreeSearch(args.base, args.max_steps, args.window_size, args.max_sample_number,
                        max_rollouts=args.max_rollouts, max_empty_rounds=args.max_empty_rounds,
                        seed=args.seed)
    try:
        await run_tree(search, rollout)
    finally:
        for future in nodes.values():
            if future.done() and not future.cancelled() and future.exception() is None:
                ctx.pool.release(future.result().snapshot)
    pairs = len(search.contrast_pairs())
    ctx.counters["pairs"] += pairs
    keys = list(finished)
    return {**row, "score": float(search.score),
            "res": [int(finished[k][1].success) for k in keys],
            "res_cur": {k: int(finished[k][1].success) for k in keys},
            "full_index": {k: list(finished[k][0]) for k in keys},
            "steps": {k: finished[k][1].steps for k in keys},
            "history": {k: finished[k][1].history for k in keys},
            "policies": {k: [e["temperature"] for e in finished[k][1].log] for k in keys},
            # The in-context examples every rollout saw: a pair prompt can be rebuilt from them.
            "log_infos": {"env_state": root.env_state, "examples": {"set": task.icl or task.kind, "n": task.n_icl},
                          "rollouts": search.rollouts,
                          "rounds": search.rounds, "contrast_pairs": pairs, "nodes": len(nodes) - 1,
                          "runs": {k: {"end_reason": finished[k][1].end_reason,
                                       "steps": list(finished[k][1].log)} for k in keys}}}


if __name__ == "__main__":
    raise SystemExit(runner.main(sys.modules[__name__]))
