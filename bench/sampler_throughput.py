"""Benchmark: throughput of the tree sampler vs the original DensePolicy's way of driving a server.

Both arms sample the same GSM8K train tasks with the same tree algorithm (`TreeSearch`), the same
budgets, the same per-node work (one chat request to the model, then the action run in the
sandbox) and the same server: the embedded SmolLM2-135M-Instruct behind vLLM on the CPU (or
`--engine transformers`), started with the launcher's own command line (densepolicy/engines.py).

ours:      one process, asyncio: `agents.codeact_agent_tree.solve` on every task at once, each
           tree running all rollouts of a round concurrently (one future per node, shared).
baseline:  what the original did: P worker processes (here P asyncio workers in one process,
           each strictly sequential), each taking whole tasks off a queue and sampling the tree
           one rollout after another, one node after another; nodes are cached per task (a
           later rollout reuses an earlier one's nodes), but nothing is ever in flight twice in
           a worker, so at most P requests reach the server at once. It uses the project's own
           `step`, `LLMClient`, `SandboxPool` (fork snapshots, not the original's replay, so the
           baseline is faster than the original was) and `TreeSearch`.

Trees are sampled (temperatures > 0), so the two arms do not generate exactly the same tokens;
the comparison is therefore on rates: generated tokens per second (the headline ratio) and
rollouts per second. Peak requests in flight are measured, to show each arm's concurrency.

    python bench/sampler_throughput.py           # a few minutes on 2 CPU cores with vLLM
    python bench/sampler_throughput.py --engine transformers --tasks 2 --max_rollouts 3

Ends with `ratio=<tokens/s ours / tokens/s baseline>` (> 1: the tree sampler is faster).
Our arm runs first, so any server-side warm cache left behind (prefix blocks of the same
prompts) can only favour the baseline.
"""
import argparse
import asyncio
import collections
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from common import MODEL, Server, log, record_requests, run_trees
from agents.codeact import start_episode, step
from agents.runner import make_task
from dataset import dataset_info, load_tasks
from densepolicy.llm import LLMClient
from densepolicy.sandbox import SandboxPool
from densepolicy.tree import TreeSearch, label_temperature

DATASET = "gsm8k"


# ---- measurement helpers ------------------------------------------------------------------------

async def ticker(label, llm, counters, every=20.0):
    while True:
        await asyncio.sleep(every)
        log(f"  {label}: {counters['tasks']} tasks done, {counters['rollouts']} rollouts, "
            f"{llm.stats.requests} requests, {llm.stats.completion_tokens} completion tokens")


async def measured(label, llm, counters, flight, work):
    """Run `work` (a coroutine returning per-task infos) with progress ticks; the arm's figures."""
    tick = asyncio.ensure_future(ticker(label, llm, counters))
    llm.stats.started = t = time.monotonic()
    try:
        infos = await work
    finally:
        tick.cancel()
    return dict(wall=time.monotonic() - t, rollouts=sum(i["rollouts"] for i in infos),
                nodes=sum(i["nodes"] for i in infos), requests=llm.stats.requests,
                tokens=llm.stats.completion_tokens, peak=flight["peak"])


def search_of(args, seed):
    return TreeSearch(args.base, args.max_steps, args.window_size, args.max_sample_number,
                      max_rollouts=args.max_rollouts, max_empty_rounds=args.max_empty_rounds,
                      seed=seed)


# ---- the two arms -------------------------------------------------------------------------------

async def arm_ours(args, rows, base_url, model):
    """The real tree agent: codeact_agent_tree.solve on every task concurrently."""
    return await run_trees(args, DATASET, rows, base_url, model)


async def arm_baseline(args, rows, base_url, model):
    """P sequential workers, each sampling whole trees one rollout and one node at a time."""
    llm = LLMClient(base_url, model, max_concurrency=args.max_requests, retry_seconds=120)
    flight = record_requests(llm)
    counters = collections.Counter()
    queue = collections.deque(rows)
    infos = []
    async with SandboxPool(timeout=args.exec_timeout, preload=dataset_info(DATASET)["preload"]) as pool:

        async def tree(row):
            task = make_task(DATASET, row, args)
            root = await start_episode(pool, task)
            nodes = {(): root}  # the per-task node cache
            search = search_of(args, args.seed)
            batch = search.first_round()
            while batch:
                results = []
                for labels in batch:  # rollouts one after another
                    for k in range(1, len(labels) + 1):
                        key = labels[:k]
                        if key not in nodes:  # one request at a time: this await is all
                            nodes[key] = await step(llm, pool, task, nodes[key[:-1]],
                                                    temperature=label_temperature(labels[k - 1]))
                        state = nodes[key]
                        if state.done:
                            break
                    counters["rollouts"] += 1
                    results.append((labels, labels[:k], int(state.success), state.steps))
                search.record(results)
                batch = search.next_round()
            for state in nodes.values():
                pool.release(state.snapshot)
            return dict(rollouts=search.rollouts, nodes=len(nodes) - 1, score=search.score)

        async def worker(w):
            while queue:
                row = queue.popleft()
                info = await tree(row)
                infos.append(info)
                counters["tasks"] += 1
                log(f"  baseline worker {w}: task {row['index']} done: {info['rollouts']} "
                    f"rollouts, {info['nodes']} nodes, score {info['score']:.0f}")

        async def all_workers():
            await asyncio.gather(*[worker(w) for w in range(args.workers)])
            return infos

        figures = await measured("baseline", llm, counters, flight, all_workers())
    await llm.close()
    return figures


async def warm_up(base_url, model):
    llm = LLMClient(base_url, model, retry_seconds=120)
    t = time.monotonic()
    await asyncio.gather(*[llm.chat([{"role": "user", "content": f"Count to {n}."}], max_tokens=4)
                           for n in (3, 5)])
    await llm.close()
    log(f"warm-up: 2 requests in {time.monotonic() - t:.1f} s")


# ---- main ---------------------------------------------------------------------------------------

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engine", default="vllm", help="vllm (the CPU build here) or transformers")
    p.add_argument("--tasks", type=int, default=10,
                   help="first N GSM8K train tasks (>= --workers, so the baseline can keep P requests in flight)")
    p.add_argument("--workers", type=int, default=10, help="baseline workers (P)")
    p.add_argument("--base", type=int, default=3)
    p.add_argument("--max_steps", type=int, default=3)
    p.add_argument("--window_size", type=int, default=4)
    p.add_argument("--max_rollouts", type=int, default=8)
    # Huge: the rollout budget, not the pair target, ends every tree, so both arms do as much.
    p.add_argument("--max_sample_number", type=int, default=10_000)
    p.add_argument("--max_empty_rounds", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n_icl", type=int, default=0)
    p.add_argument("--max_turn", type=int, default=10)
    p.add_argument("--max_tokens", type=int, default=64)
    p.add_argument("--max_context", type=int, default=8192)
    p.add_argument("--exec_timeout", type=float, default=5.0)
    p.add_argument("--max_requests", type=int, default=64, help="our arm's LLM requests in flight")
    p.add_argument("--data_dir", default=os.environ.get("DATA_DIR"))
    p.add_argument("--order", default="ours,baseline", help="which arm runs first")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # SIGTERM (e.g. `timeout`) must still run the finally below that stops the server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.contrastive_method = "temperature"
    from densepolicy.models import resolve_model
    model_path = str(resolve_model(MODEL))
    rows = load_tasks(DATASET, "train", args.data_dir)[:args.tasks]
    log(f"{args.engine}: {len(rows)} {DATASET} train tasks; tree B={args.base} D={args.max_steps} "
        f"W={args.window_size} max_rollouts={args.max_rollouts} n_icl={args.n_icl} "
        f"max_tokens={args.max_tokens}; baseline P={args.workers}; {os.cpu_count()} CPUs")
    workdir = Path(tempfile.mkdtemp(prefix="bench-sampler-"))
    arms = {"ours": arm_ours, "baseline": arm_baseline}
    results = {}
    try:
        with Server(args.engine, workdir, model_path) as server:
            asyncio.run(warm_up(server.base_url, server.served))
            for name in args.order.split(","):
                log(f"arm {name}: start")
                results[name] = asyncio.run(arms[name](args, rows, server.base_url, server.served))
                r = results[name]
                log(f"arm {name}: {r['wall']:.1f} s, {r['rollouts']} rollouts, {r['tokens']} tokens")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'arm':<9} {'wall s':>7} {'rollouts':>8} {'rollouts/s':>10} {'nodes':>5} "
          f"{'requests':>8} {'peak in flight':>14} {'compl. tokens':>13} {'tokens/s':>8}")
    for name in ("baseline", "ours"):
        r = results[name]
        print(f"{name:<9} {r['wall']:>7.1f} {r['rollouts']:>8} {r['rollouts'] / r['wall']:>10.3f} "
              f"{r['nodes']:>5} {r['requests']:>8} {r['peak']:>14} {r['tokens']:>13} "
              f"{r['tokens'] / r['wall']:>8.1f}")
    o, b = results["ours"], results["baseline"]
    tok_ratio = (o["tokens"] / o["wall"]) / (b["tokens"] / b["wall"])
    roll_ratio = (o["rollouts"] / o["wall"]) / (b["rollouts"] / b["wall"])
    print(f"\nrollouts/s ours / baseline = {roll_ratio:.2f}; "
          f"wall baseline / ours = {b['wall'] / o['wall']:.2f}")
    print("ratio below = generated tokens/s, ours / baseline (> 1: the tree sampler is faster)")
    print(f"ratio={tok_ratio:.2f}")


if __name__ == "__main__":
    main()
