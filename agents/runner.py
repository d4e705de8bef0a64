"""What every agent process does around its agent: flags, tasks, sharding, resume, progress, writing.

An agent module supplies `add_args(parser)`, `run_name(args)`, `COLUMNS` and
`async solve(row, task, ctx) -> dict`; `main(agent_module)` does the rest. One process runs many
tasks concurrently (asyncio), so a single process can keep a model server busy.
"""
import argparse
import asyncio
import collections
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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


def make_task(dataset: str, row: dict, args) -> Task:
    """The Task a row runs as. Every agent defines --max_steps: a plain episode's reply budget, the
    tree's depth D (Task.max_steps = D, so depth D always ends an episode)."""
    info = dataset_info(dataset)
    n_icl = info["n_icl"] if args.n_icl is None else args.n_icl
    common = dict(goal=row["input"], n_icl=n_icl, max_turn=args.max_turn, max_steps=args.max_steps,
                  max_tokens=args.max_tokens, max_context=args.max_context)
    if info["kind"] == "tool":
        return Task(kind="tool", setup=info["setup"], setup_kwargs={"task": row},
                    tools_doc=info["tools_doc"], icl=info.get("icl"), **common)
    return Task(kind=info["kind"], target=str(row["target"]), **common)


async def solve_task(agent, row: dict, ctx: Context) -> dict:
    """One task, start to finish: the finished result row. Shared by the agent processes of the
    tmux launcher and the workers of the Ray backend."""
    task = make_task(ctx.args.dataset, row, ctx.args)
    return await agent.solve(row, task, ctx)


@contextlib.asynccontextmanager
async def open_context(args, counters=None):
    """The LLM client and the sandbox pool one process runs its tasks with."""
    info = dataset_info(args.dataset)
    llm = LLMClient(args.base_url, args.served_model or args.model, max_concurrency=args.max_requests,
                    retry_seconds=args.llm_retry_seconds)
    try:
        async with SandboxPool(timeout=args.exec_timeout, preload=info["preload"],
                               readable=(args.data_dir,) if args.data_dir else ()) as pool:
            yield Context(args, llm, pool, collections.Counter() if counters is None else counters)
    finally:
        await llm.close()


def load_run(agent, args) -> tuple[list[dict], Path, set]:
    """(all tasks of the run, its result directory, indices already finished there)."""
    tasks = load_tasks(args.dataset, args.split or agent.DEFAULT_SPLIT, args.data_dir)
    if args.task_limit is not None:
        tasks = tasks[:args.task_limit]
    out_dir = run_dir(args.output_root, agent.NAME, args.model, agent.run_name(args))
    done = done_indices(out_dir, args.dataset) if out_dir.exists() else set()
    return tasks, out_dir, done


def result_columns(agent, tasks: list[dict]) -> list[str]:
    return list(dict.fromkeys([*tasks[0].keys(), *agent.COLUMNS]))


def shard_tasks(tasks: list[dict], num_shards: int, shard_id: int) -> list[dict]:
    """Contiguous block `shard_id` of ceil(L/N) tasks. The blocks are cut from the full task list,
    not from the unfinished ones, so a rerun of one shard never overlaps another's work."""
    size = math.ceil(len(tasks) / num_shards) if tasks else 0
    return tasks[shard_id * size:(shard_id + 1) * size]


class Progress:
    """A tqdm bar on a terminal; on a log, one plain line every `every` seconds and at the end."""

    def __init__(self, total: int, label: str, rate: Callable[[], float], counters, every: float = 30.0):
        self.total, self.label, self.rate, self.counters, self.every = total, label, rate, counters, every
        self.done = self.solved = 0
        self.last = time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=label, dynamic_ncols=True)

    def figures(self) -> str:
        acc = 100.0 * self.solved / max(self.done, 1)
        extra = "".join(f", {k} {v}" for k, v in self.counters.items())
        return f"acc {acc:.1f}%{extra}, {self.rate():.1f} tok/s"

    def update(self, solved: bool):
        self.done += 1
        self.solved += bool(solved)
        if self.bar is not None:
            self.bar.set_postfix_str(self.figures())
            self.bar.update(1)
        elif self.done == self.total:
            self.line()

    def line(self):
        self.last = time.monotonic()
        print(f"[{time.strftime('%H:%M:%S')}] {self.label}: {self.done}/{self.total} tasks, "
              f"{self.figures()}", flush=True)

    def poke(self):
        """Call every few seconds: fresh figures on the bar, or a line every `every` seconds."""
        if self.bar is not None:
            self.bar.set_postfix_str(self.figures())
        elif time.monotonic() - self.last >= self.every:
            self.line()

    async def tick(self):
        while True:
            await asyncio.sleep(2.0)
            self.poke()

    def close(self):
        if self.bar is not None:
            self.bar.close()


async def run(agent, args) -> int:
    tasks, out_dir, done = load_run(agent, args)
    mine = [t for t in shard_tasks(tasks, args.num_shards, args.shard_id) if t["index"] not in done]
    path = shard_path(out_dir, args.dataset, args.shard_id)
    print(f"{agent.NAME} on {args.dataset}/{args.split or agent.DEFAULT_SPLIT}: shard {args.shard_id}/"
          f"{args.num_shards}, {len(mine)} tasks to run ({len(done)} already done) -> {path}", flush=True)
    if not mine:
        return 0
    writer = ResultWriter(path, result_columns(agent, tasks))
    limit = asyncio.Semaphore(args.concurrency)
    async with open_context(args) as ctx:
        progress = Progress(len(mine), f"{args.dataset}[{args.shard_id}]",
                            ctx.llm.stats.tokens_per_second, ctx.counters)

        async def one(row):
            async with limit:
                result = await solve_task(agent, row, ctx)
            writer.append(result)
            progress.update(result["score"] > 0)

        ticker = asyncio.ensure_future(progress.tick())
        try:
            await asyncio.gather(*[one(row) for row in mine])
        finally:
            ticker.cancel()
            progress.close()
    return 0


def parse_args(agent, argv=None) -> argparse.Namespace:
    """The agent's flags (common ones plus its own), checked."""
    parser = common_parser(agent.__doc__.splitlines()[0])
    agent.add_args(parser)
    args = parser.parse_args(argv)
    if hasattr(agent, "check_args"):
        agent.check_args(args, parser)
    if not 0 <= args.shard_id < args.num_shards:
        parser.error(f"--shard_id {args.shard_id} is outside 0..{args.num_shards - 1}")
    try:
        dataset_info(args.dataset)
    except DataError as e:
        parser.error(str(e))
    return args


def main(agent, argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(agent, argv)
    try:
        return asyncio.run(run(agent, args))
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except LLMUnavailable as e:
        # One line: finished rows are on disk already, and a rerun skips them.
        print(f"error: {e} (finished tasks are saved; the same command again does the rest)",
              file=sys.stderr)
        return 1
