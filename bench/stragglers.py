"""Benchmark: makespan of static contiguous shards (the tmux launcher) vs dynamic distribution
(the Ray backend), on tasks whose durations vary widely.

Both arms run through the Ray backend's own dispatcher (`distribute`) on a real local Ray cluster,
with the same workers and the same tasks; only the hand-out differs: `static` gives worker k the
contiguous block k of ceil(L/N) tasks, `dynamic` gives the next task to whichever worker frees a
slot first. A task is a controlled delay drawn from a heavy-tailed (log-normal) distribution, the
shape of real agent runs: most episodes end in a few steps, a few run to the step limit, and a
tree's size varies by orders of magnitude. No model is involved: the delay stands in for the task.

    python bench/stragglers.py          # prints a table, then `ratio=<static / dynamic makespan>`
"""
import argparse
import asyncio
import logging
import random
import statistics
import time

import ray

from agents.runner import shard_tasks
from pipeline.ray_backend import distribute


@ray.remote(num_cpus=0)
class Sleeper:
    """A worker whose task is to wait for the task's duration (no CPU, so many fit a laptop)."""

    async def solve(self, row):
        await asyncio.sleep(row["seconds"])
        return {"row": row}

    def ping(self):
        return True


def makespan(workers, rows, slots, static) -> tuple[float, dict]:
    busy = dict.fromkeys(workers, 0.0)

    def on_result(w, result):
        busy[w] += result["row"]["seconds"]

    t = time.perf_counter()
    out = distribute(workers, rows, slots, on_result, static=static)
    assert out.done == len(rows) and not (out.failed or out.left)
    return time.perf_counter() - t, busy


def list_schedule(rows, workers, slots) -> float:
    """The makespan dynamic hand-out reaches with zero overhead: each task, in order, goes to the
    slot that frees up first."""
    free = [0.0] * (workers * slots)
    for r in rows:
        free.sort()
        free[0] += r["seconds"]
    return max(free)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--tasks", type=int, default=96)
    p.add_argument("--mean", type=float, default=0.25, help="mean task duration, seconds")
    p.add_argument("--sigma", type=float, default=1.2, help="log-normal shape: larger, heavier tail")
    p.add_argument("--slots", type=int, default=1, help="tasks in flight per worker")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()

    rng = random.Random(a.seed)
    mu = -a.sigma ** 2 / 2  # log-normal with mean 1, scaled to --mean
    rows = [{"index": i, "seconds": a.mean * rng.lognormvariate(mu, a.sigma)} for i in range(a.tasks)]
    d = sorted(r["seconds"] for r in rows)
    total = sum(d)

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 << 20,
             logging_level=logging.WARNING)
    try:
        workers = {i: Sleeper.remote() for i in range(a.workers)}
        ray.get([w.ping.remote() for w in workers.values()])  # actor start-up stays out of the timing
        static, static_busy = makespan(workers, rows, a.slots, static=True)
        dynamic, dynamic_busy = makespan(workers, rows, a.slots, static=False)
    finally:
        ray.shutdown()

    blocks = [sum(r["seconds"] for r in shard_tasks(rows, a.workers, k)) for k in range(a.workers)]
    print(f"{a.tasks} tasks on {a.workers} workers, {a.slots} slot(s) each; durations (s): "
          f"mean {statistics.fmean(d):.3f}, median {d[len(d) // 2]:.3f}, p90 {d[int(0.9 * len(d))]:.3f}, "
          f"max {d[-1]:.3f}, total {total:.1f}")
    print(f"lower bound on any makespan: max(total / workers, longest task) = "
          f"{max(total / a.workers, d[-1]):.2f} s")
    print(f"{'hand-out':>9}  {'makespan s':>10}  {'without overhead s':>18}  {'busiest worker s':>16}  "
          f"{'idlest worker s':>15}")
    for name, span, ideal, busy in (
            ("static", static, max(blocks) if a.slots == 1 else float("nan"), static_busy),
            ("dynamic", dynamic, list_schedule(rows, a.workers, a.slots), dynamic_busy)):
        print(f"{name:>9}  {span:>10.2f}  {ideal:>18.2f}  {max(busy.values()):>16.2f}  "
              f"{min(busy.values()):>15.2f}")
    print(f"ratio={static / dynamic:.2f}")


if __name__ == "__main__":
    main()
