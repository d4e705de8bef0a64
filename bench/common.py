"""What the benchmarks share: a model server started with the launcher's own command line
(densepolicy/engines.py), the real tree agent run over a few tasks with its figures, and a log."""
import asyncio
import collections
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from agents import codeact_agent_tree
from agents.runner import Context, make_task
from dataset import dataset_info
from densepolicy import engines
from densepolicy.llm import LLMClient
from densepolicy.sandbox import SandboxPool

MODEL = "SmolLM2-135M-Instruct"
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:7.1f}s] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`with Server(engine, workdir) as s:` one model server of the embedded model on a free port,
    started with the launcher's exact command line; `s.startup` is its start-up time in seconds."""

    def __init__(self, engine: str, workdir: Path, model_path: str, timeout: float = 900):
        self.engine, self.workdir, self.model_path, self.timeout = engine, Path(workdir), model_path, timeout
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.served = engines.served_name(engine, MODEL, model_path)

    def __enter__(self):
        engines.check_available(self.engine, 0)
        command = engines.server_command(self.engine, self.model_path, MODEL, self.port, "", 0, self.workdir)
        self.log_path = self.workdir / f"server_{self.engine}_{self.port}.log"
        self.logf = open(self.log_path, "w")
        log(f"starting {self.engine}: {command}")
        t = time.monotonic()
        self.proc = subprocess.Popen(["bash", "-c", command], stdout=self.logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        while not engines.healthy(self.port, timeout=2):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.engine} server exited with {self.proc.returncode}:\n"
                                   + self.log_path.read_text()[-3000:])
            if time.monotonic() - t > self.timeout:
                raise RuntimeError(f"{self.engine} server not healthy after {self.timeout:.0f} s")
            time.sleep(0.5)
        self.startup = time.monotonic() - t
        log(f"{self.engine} healthy on port {self.port} after {self.startup:.1f} s")
        return self

    def __exit__(self, *exc):
        try:  # a busy server may wait for its requests on SIGTERM: 10 s, then SIGKILL
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.logf.close()


def record_requests(llm: LLMClient) -> dict:
    """Wrap llm.chat (what `step` calls): the peak of requests in flight, and every prompt sent,
    in the order sent (for the prefix-cache bound)."""
    orig, state = llm.chat, {"now": 0, "peak": 0, "prompts": []}

    async def chat(messages, *a, **k):
        state["now"] += 1
        state["peak"] = max(state["peak"], state["now"])
        state["prompts"].append([dict(m) for m in messages])
        try:
            return await orig(messages, *a, **k)
        finally:
            state["now"] -= 1

    llm.chat = chat
    return state


async def run_trees(args, dataset: str, rows: list[dict], base_url: str, served: str) -> dict:
    """The real tree agent (`codeact_agent_tree.solve`) on every task at once; its figures."""
    llm = LLMClient(base_url, served, max_concurrency=args.max_requests, retry_seconds=120)
    recorded = record_requests(llm)
    counters = collections.Counter()
    async with SandboxPool(timeout=args.exec_timeout, preload=dataset_info(dataset)["preload"],
                           readable=(args.data_dir,) if args.data_dir else ()) as pool:
        ctx = Context(args, llm, pool, counters)

        async def one(row):
            task = make_task(dataset, row, args)
            out = await codeact_agent_tree.solve(row, task, ctx)
            info = out["log_infos"]
            log(f"  {dataset} task {row['index']}: {info['rollouts']} rollouts, {info['nodes']} nodes, "
                f"score {out['score']:.0f}")
            return out

        llm.stats.started = t = time.monotonic()
        outs = await asyncio.gather(*[one(r) for r in rows])
        wall = time.monotonic() - t
    await llm.close()
    return dict(wall=wall, requests=llm.stats.requests, tokens=llm.stats.completion_tokens,
                prompt_tokens=llm.stats.prompt_tokens, peak=recorded["peak"], prompts=recorded["prompts"],
                rollouts=sum(o["log_infos"]["rollouts"] for o in outs),
                nodes=sum(o["log_infos"]["nodes"] for o in outs),
                solved=sum(o["score"] > 0 for o in outs))
