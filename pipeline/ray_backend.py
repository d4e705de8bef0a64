"""The Ray backend of distributed_test.sh (LAUNCHER=ray): the same runs across every GPU of a
Ray cluster, with tasks handed out dynamically instead of in static contiguous shards.

One `Worker` actor per GPU (`num_gpus=1`; on a CPU-only cluster, RAY_WORKERS actors of
RAY_WORKER_CPUS CPUs) starts its own OpenAI-compatible server under a `Supervisor` (the command
line of the run's server spec for its GPU and port) and runs tasks with the same per-task code as
an agent process (`runner.solve_task`). The driver keeps a shared queue and gives a worker its next
task as soon as one of its slots frees up, so a slow task never holds back the others; every
finished row comes back to the driver and is written at once by the one results writer, into
shard files named by worker id in the usual run directory: merge, scoring and resume are as with
the tmux launcher. A worker whose server cannot come back is retired and its tasks go back to the
queue; when no worker is left the run stops, having lost no finished task.

    python -m pipeline.ray_backend --agent codeact_agent --workers 2 --slots 1 \
        --server_spec '{"engine": "vllm", "model_path": "/models/M", "model": "M", "num_gpus": 2}' \
        -- --model M --dataset gsm8k
    python -m pipeline.ray_backend --count_gpus       # GPUs of the cluster at RAY_ADDRESS
"""
import argparse
import asyncio
import collections
import importlib
import logging
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
from ray.exceptions import RayActorError, RayTaskError

from agents import runner
from dataset import DataError
from densepolicy import engines, paths
from densepolicy.llm import LLMUnavailable
from densepolicy.results import ResultWriter, shard_path
from densepolicy.supervisor import Supervisor

ROOT = paths.ROOT


class ServerLost(RuntimeError):
    """A worker's model server died and could not be restarted."""


class Worker:
    """A Ray actor: one model server (supervised) and one agent context running handed-out tasks."""

    def __init__(self, worker_id: int, agent_name: str, args, server, port_base: int,
                 log_dir: str, max_restarts: int, start_timeout: float):
        self.id, self.args = worker_id, args
        self.agent = importlib.import_module(f"agents.{agent_name}")
        self.server, self.port_base, self.log_dir = server, port_base, Path(log_dir)
        self.max_restarts, self.start_timeout = max_restarts, start_timeout
        self.supervisor = self.watcher = self.ctx = self._context = None

    async def start(self) -> dict:
        gpus = ray.get_gpu_ids()
        # GPU g serves on PORT_BASE+g, as with the tmux launcher; CPU workers go by worker id.
        gpu = str(gpus[0]) if gpus else ""
        port = self.port_base + (int(gpus[0]) if gpus else self.id)
        self.supervisor = Supervisor(self.server.command(gpu, port), port, self.log_dir / f"server_{self.id}.log",
                                     max_restarts=self.max_restarts, start_timeout=self.start_timeout)
        await self.supervisor.start()
        self.watcher = asyncio.ensure_future(self.supervisor.watch())
        self.args.base_url = f"http://127.0.0.1:{port}/v1"
        self._context = runner.open_context(self.args)
        self.ctx = await self._context.__aenter__()
        return {"node": socket.gethostname(), "gpu": gpu or None, "port": port,
                "log": str(self.supervisor.log_path)}

    async def solve(self, row: dict) -> dict:
        """The finished row, or ServerLost when the server is gone for good (the LLM client alone
        would wait out its whole retry window first)."""
        if self.supervisor.failed:
            raise ServerLost(self.supervisor.failed)
        job = asyncio.ensure_future(runner.solve_task(self.agent, row, self.ctx))
        gone = asyncio.ensure_future(self.supervisor.gone.wait())
        await asyncio.wait({job, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not job.done():
            job.cancel()
            raise ServerLost(self.supervisor.failed)
        return {"row": job.result(), "tokens": self.ctx.llm.stats.completion_tokens,
                "counters": dict(self.ctx.counters)}

    async def stop(self):
        if self.watcher:
            self.watcher.cancel()
        if self._context:
            await self._context.__aexit__(None, None, None)
        if self.supervisor:
            self.supervisor.kill()


@dataclass
class Outcome:
    done: int = 0
    failed: list = field(default_factory=list)    # (row, error): the agent raised on that task
    lost: dict = field(default_factory=dict)      # worker id -> why it was retired
    left: list = field(default_factory=list)      # rows not run because no worker was left


def distribute(workers: dict, rows: list[dict], slots: int, on_result, *, static: bool = False,
               on_idle=None, log=print) -> Outcome:
    """Run `rows` on `workers` ({id: actor with `solve(row)`}), at most `slots` in flight each.

    Dynamic (default): one shared queue; whenever a task ends, free slots take the next ones.
    static=True is what the tmux launcher does (worker k owns contiguous block k); it is here
    for the benchmark. A task whose worker lost its server (or died) goes back to the front of
    the queue and that worker is retired; a task on which the agent itself raised is reported in
    `failed` and not retried. `on_result(worker_id, out)` is called in the driver per finished
    task; `on_idle()` every couple of seconds while waiting.
    """
    ids = list(workers)
    shared = collections.deque(rows)
    if static:
        blocks = [runner.shard_tasks(rows, len(ids), k) for k in range(len(ids))]
        queues = {w: collections.deque(b) for w, b in zip(ids, blocks)}
    else:
        queues = {w: shared for w in ids}
    inflight, load, alive, out = {}, dict.fromkeys(ids, 0), set(ids), Outcome()

    def fill():
        for w in ids:
            while w in alive and load[w] < slots and queues[w]:
                row = queues[w].popleft()
                inflight[workers[w].solve.remote(row)] = (w, row)
                load[w] += 1

    def retire(w, why):
        if w in alive:
            alive.discard(w)
            out.lost[w] = why
            log(f"worker {w} retired: {why}; its tasks go back to the queue")
            ray.kill(workers[w])  # its other in-flight tasks fail now instead of waiting

    fill()
    while inflight and alive:
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=2.0)
        if not ready:
            if on_idle:
                on_idle()
            continue
        w, row = inflight.pop(ready[0])
        load[w] -= 1
        try:
            result = ray.get(ready[0])
        except (ServerLost, LLMUnavailable, RayActorError) as e:
            queues[w].appendleft(row)
            retire(w, str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__)
        except RayTaskError as e:
            out.failed.append((row, e))
            log(f"task {row.get('index')} failed on worker {w}:\n{e}")
        else:
            out.done += 1
            on_result(w, result)
        fill()
    out.left = [row for _, row in inflight.values()] + [r for q in {id(q): q for q in queues.values()}.values()
                                                          for r in q]
    return out


def connect(num_cpus: int, object_store_mb: int):
    """Join the cluster at RAY_ADDRESS, or start a local one sized for the workers."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")  # keep every worker's supervisor messages
    if not sys.stdout.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # no escape codes in driver.log
    # Workers import this project from its checkout, which must sit at the same path on every node.
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "PYTHONUNBUFFERED": "1", "DATA_DIR": os.environ.get("DATA_DIR", "")}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(logging_level=logging.WARNING, runtime_env={"env_vars": env})
    else:
        os.environ.pop("RAY_ADDRESS", None)
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, num_cpus), include_dashboard=False,
                 object_store_memory=object_store_mb << 20, logging_level=logging.WARNING,
                 runtime_env={"env_vars": env})


def _stop_on_signals():
    # tmux kill-session (the launcher's stop) sends SIGHUP: unwind so that the `finally` below
    # ends the workers and their servers. ray.init installs its own SIGTERM handler; ours wins.
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, handler)


def run(cfg, agent, args) -> int:
    """The run `cfg` (main's flags) asks for; `cfg.server` is the engines.ServerSpec each worker
    starts its server from (its command line for the worker's GPU and port)."""
    tasks, out_dir, done = runner.load_run(agent, args)
    pending = [t for t in tasks if t["index"] not in done]
    split = args.split or agent.DEFAULT_SPLIT
    print(f"{agent.NAME} on {args.dataset}/{split} with Ray: {len(pending)} tasks to run "
          f"({len(done)} already done) -> {out_dir}", flush=True)
    if not pending:
        return 0
    cpus = cfg.cpus_per_worker * cfg.workers
    connect(math.ceil(cpus), cfg.object_store_mb)
    _stop_on_signals()
    have = ray.cluster_resources()
    for name, need in (("GPU", cfg.gpus_per_worker * cfg.workers), ("CPU", cpus)):
        if need > have.get(name, 0):
            print(f"error: {cfg.workers} worker(s) need {need:g} {name}(s); the Ray cluster has "
                  f"{have.get(name, 0):g}", file=sys.stderr)
            ray.shutdown()
            return 2
    slots = cfg.slots * args.concurrency
    actor = ray.remote(Worker).options(num_cpus=cfg.cpus_per_worker, num_gpus=cfg.gpus_per_worker,
                                       max_concurrency=slots + 4, max_restarts=0)
    workers = {i: actor.remote(i, cfg.agent, args, cfg.server, cfg.port_base, cfg.log_dir,
                               cfg.max_restarts, cfg.start_timeout) for i in range(cfg.workers)}
    try:
        up = {}
        for i, ref in [(i, w.start.remote()) for i, w in workers.items()]:
            try:
                info = ray.get(ref)
            except Exception as e:  # a server that cannot start: say why, go on with the others
                print(f"worker {i}: could not start its server: {str(e).strip().splitlines()[-1]}",
                      file=sys.stderr)
                ray.kill(workers[i])
                continue
            up[i] = workers[i]
            print(f"worker {i}: node {info['node']}, GPU {info['gpu']}, server on port {info['port']} "
                  f"(log on that node: {info['log']})", flush=True)
        if not up:
            print("error: no worker could start its model server (see the logs above)", file=sys.stderr)
            return 1

        columns, writers = runner.result_columns(agent, tasks), {}
        tokens, counts, started = {}, {}, time.monotonic()
        per_worker = collections.Counter()
        counters = collections.Counter()
        progress = runner.Progress(len(pending), f"{args.dataset}[ray x{len(up)}]",
                                   lambda: sum(tokens.values()) / max(time.monotonic() - started, 1e-9),
                                   counters)

        def on_result(w, result):
            if w not in writers:  # a shard file per worker, created with its first row
                writers[w] = ResultWriter(shard_path(out_dir, args.dataset, w), columns)
            writers[w].append(result["row"])
            per_worker[w] += 1
            tokens[w], counts[w] = result["tokens"], result["counters"]
            counters.clear()
            for c in counts.values():
                counters.update(c)
            progress.update(result["row"]["score"] > 0)

        outcome = distribute(up, pending, slots, on_result, on_idle=progress.poke)
        progress.close()
        print(f"{outcome.done} task(s) finished ("
              + ", ".join(f"worker {w}: {n}" for w, n in sorted(per_worker.items()))
              + f") -> {out_dir}", flush=True)
        code = 0
        if outcome.failed:
            code = 1
            print(f"error: {len(outcome.failed)} task(s) raised (indices "
                  f"{sorted(r['index'] for r, _ in outcome.failed)}); the same command again retries them",
                  file=sys.stderr)
        if outcome.left:
            code = 1
            print(f"error: every worker lost its model server ({'; '.join(outcome.lost.values())}); "
                  f"{outcome.done} finished task(s) are saved, {len(outcome.left)} left: the same command "
                  "again does the rest", file=sys.stderr)
        return code
    finally:
        stops = [w.stop.remote() for w in workers.values()]
        ray.wait(stops, num_returns=len(stops), timeout=30)
        for w in workers.values():
            ray.kill(w)
        ray.shutdown()


def count_gpus() -> int:
    ray.init(logging_level=logging.WARNING)
    try:
        return int(ray.cluster_resources().get("GPU", 0))
    finally:
        ray.shutdown()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, agent_argv = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(description="Run an agent over a dataset on a Ray cluster.",
                                epilog="Agent flags follow '--', as for python -m agents.<agent>.")
    p.add_argument("--count_gpus", action="store_true", help="print the cluster's GPU count and exit")
    p.add_argument("--agent", choices=["codeact_agent", "codeact_agent_tree"])
    p.add_argument("--workers", type=int, default=1, help="one per GPU, or CPU workers")
    p.add_argument("--gpus_per_worker", type=float, default=0)
    p.add_argument("--cpus_per_worker", type=float, default=1)
    p.add_argument("--slots", type=int, default=1,
                   help="PROCESSES_PER_GPU: a worker runs slots x --concurrency tasks at once")
    p.add_argument("--server_spec", help="the servers' engines.ServerSpec as JSON (engine, model_path, "
                                         "model, num_gpus; log_dir optional)")
    p.add_argument("--port_base", type=int, default=8000)
    p.add_argument("--log_dir", default="logs/ray", help="server logs (on each worker's node)")
    p.add_argument("--max_restarts", type=int, default=3, help="server restarts per worker")
    p.add_argument("--start_timeout", type=float, default=900.0)
    p.add_argument("--object_store_mb", type=int, default=512, help="object store of a local cluster")
    cfg = p.parse_args(ours)
    if cfg.count_gpus:
        print(count_gpus())
        return 0
    if not cfg.agent or not cfg.server_spec or cfg.workers < 1:
        p.error("--agent, --server_spec and --workers >= 1 are needed")
    cfg.log_dir = str(Path(cfg.log_dir).resolve())
    try:
        cfg.server = engines.ServerSpec.from_json(cfg.server_spec)
    except ValueError as e:
        p.error(f"--server_spec: {e}")
    agent = importlib.import_module(f"agents.{cfg.agent}")
    args = runner.parse_args(agent, agent_argv)
    try:
        return run(cfg, agent, args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
