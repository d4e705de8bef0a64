"""What every agent process does around its agent: flags, tasks, sharding, resume, progress, writing.

An agent module supplies `add_args(parser)`, `run_name(args)`, `COLUMNS` and
`async solve(row, task, ctx) -> dict`; `main(agent_module)` does the rest. One process runs many
tasks concurrently (asyncio), so a single process can keep a model server busy.
"""
import argparse
import asyncio
import collections
import math
import os
import sys
import time
from dataclasses import dataclass

from agents.codeact import Task
from dataset import DataError, dataset_info, load_tasks
from densepolicy.llm import LLMClient, LLMUnavailable
from densepolicy.results import ResultWriter, done_indices, run_dir, shard_path
from densepolicy.sandbox import SandboxPool


@dataclass
class Context:
    args: argparse.Namespace
    llm: LLMClient
    pool: SandboxPool
    counters: collections.Counter  # agent-specific progress figures (rollouts, pairs, ...)


def common_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", required=True, help="model name (names the result directory)")
    p.add_argument("--served_model", help="model name the server expects (default: --model)")
    p.add_argument("--base_url", default="http://127.0.0.1:8000/v1", help="OpenAI-compatible endpoint")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", help="data split (default: the agent's own)")
    p.add_argument("--data_dir", default=os.environ.get("DATA_DIR"))
    p.add_argument("--output_root", default="eval_results")
    p.add_argument("--num_shards", type=int, default=1)
    p.add_argument("--shard_id", type=int, default=0)
    p.add_argument("--task_limit", type=int, default=None, help="only the first N tasks")
    p.add_argument("--concurrency", type=int, default=16, help="tasks in flight in this process")
    p.add_argument("--max_requests", type=int, default=64, help="LLM requests in flight")
    p.add_argument("--n_icl", type=int, default=None, help="in-context examples (default: per dataset)")
    p.add_argument("--max_turn", type=int, default=10, help="answer attempts per episode")
    p.add_argument("--max_tokens", type=int, default=512, help="tokens per model reply")
    p.add_argument("--max_context", type=int, default=8192, help="model context window in tokens")
    p.add_argument("--exec_timeout", type=float, default=5.0, help="seconds per code action")
    p.add_argument("--llm_retry_seconds", type=float, default=600.0,
                   help="how long to wait for an unreachable model server before giving up")
    return p


def make_task(dataset: str, row: dict, args, max_steps: int) -> Task:
    info = dataset_info(dataset)
    n_icl = info["n_icl"] if args.n_icl is None else args.n_icl
    common = dict(goal=row["input"], n_icl=n_icl, max_turn=args.max_turn, max_steps=max_steps,
                  max_tokens=args.max_tokens, max_context=args.max_context)
    if info["kind"] == "tool":
        return Task(kind="tool", setup=info["setup"], setup_kwargs={"task": row},
                    tools_doc=info["tools_doc"], icl=info.get("icl"), **common)
    return Task(kind=info["kind"], target=str(row["target"]), **common)


def shard_tasks(tasks: list[dict], num_shards: int, shard_id: int) -> list[dict]:
    """Contiguous block `shard_id` of ceil(L/N) tasks. The blocks are cut from the full task list,
    not from the unfinished ones, so a rerun of one shard never overlaps another's work."""
    size = math.ceil(len(tasks) / num_shards) if tasks else 0
    return tasks[shard_id * size:(shard_id + 1) * size]


class Progress:
    """A tqdm bar on a terminal; on a log, one plain line every `every` seconds and at the end."""

    def __init__(self, total: int, label: str, llm: LLMClient, counters, every: float = 30.0):
        self.total, self.label, self.llm, self.counters, self.every = total, label, llm, counters, every
        self.done = self.solved = 0
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=label, dynamic_ncols=True)

    def figures(self) -> str:
        acc = 100.0 * self.solved / max(self.done, 1)
        extra = "".join(f", {k} {v}" for k, v in self.counters.items())
        return f"acc {acc:.1f}%{extra}, {self.llm.stats.tokens_per_second():.1f} tok/s"

    def update(self, solved: bool):
        self.done += 1
        self.solved += bool(solved)
        if self.bar is not None:
            self.bar.set_postfix_str(self.figures())
            self.bar.update(1)
        elif self.done == self.total:
            self.line()

    def line(self):
        print(f"[{time.strftime('%H:%M:%S')}] {self.label}: {self.done}/{self.total} tasks, "
              f"{self.figures()}", flush=True)

    async def tick(self):
        while True:
            await asyncio.sleep(self.every if self.bar is None else 2.0)
            if self.bar is None:
                self.line()
            else:
                self.bar.set_postfix_str(self.figures())

    def close(self):
        if self.bar is not None:
            self.bar.close()


async def run(agent, args) -> int:
    split = args.split or agent.DEFAULT_SPLIT
    tasks = load_tasks(args.dataset, split, args.data_dir)
    if args.task_limit is not None:
        tasks = tasks[:args.task_limit]
    out_dir = run_dir(args.output_root, agent.NAME, args.model, agent.run_name(args))
    done = done_indices(out_dir, args.dataset) if out_dir.exists() else set()
    mine = [t for t in shard_tasks(tasks, args.num_shards, args.shard_id) if t["index"] not in done]
    path = shard_path(out_dir, args.dataset, args.shard_id)
    print(f"{agent.NAME} on {args.dataset}/{split}: shard {args.shard_id}/{args.num_shards}, "
          f"{len(mine)} tasks to run ({len(done)} already done) -> {path}", flush=True)
    if not mine:
        return 0
    columns = list(dict.fromkeys([*tasks[0].keys(), *agent.COLUMNS]))
    writer = ResultWriter(path, columns)
    llm = LLMClient(args.base_url, args.served_model or args.model, max_concurrency=args.max_requests,
                    retry_seconds=args.llm_retry_seconds)
    info = dataset_info(args.dataset)
    counters = collections.Counter()
    progress = Progress(len(mine), f"{args.dataset}[{args.shard_id}]", llm, counters)
    limit = asyncio.Semaphore(args.concurrency)
    async with SandboxPool(timeout=args.exec_timeout, preload=info["preload"],
                           readable=(args.data_dir,) if args.data_dir else ()) as pool:
        ctx = Context(args, llm, pool, counters)

        async def one(row):
            async with limit:
                task = make_task(args.dataset, row, args, agent.max_steps(args))
                result = await agent.solve(row, task, ctx)
            writer.append(result)
            progress.update(result["score"] > 0)

        ticker = asyncio.ensure_future(progress.tick())
        try:
            await asyncio.gather(*[one(row) for row in mine])
        finally:
            ticker.cancel()
            progress.close()
            await llm.close()
    return 0


def main(agent, argv=None) -> int:
    parser = common_parser(agent.__doc__.splitlines()[0])
    agent.add_args(parser)
    args = parser.parse_args(argv)
    if not 0 <= args.shard_id < args.num_shards:
        parser.error(f"--shard_id {args.shard_id} is outside 0..{args.num_shards - 1}")
    try:
        dataset_info(args.dataset)
    except DataError as e:
        parser.error(str(e))
    try:
        return asyncio.run(run(agent, args))
    except (DataError, LLMUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
