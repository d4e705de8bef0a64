"""Benchmark: the same tree workloads on vLLM's CPU build and on `transformers serve`, one machine,
one run; the prefix cache's efficiency against the radix-tree bound; server start-up times.

Workloads (the real tree agent, `codeact_agent_tree.solve`, on every task at once):
  gsm8k   a few GSM8K train tasks with the 8 in-context examples: long shared prompts, the paper's
          kind of workload;
  babyai  a few BabyAI GoToRedBallGrey train tasks with the demo's budget (2 in-context examples).
Each engine is started with the launcher's own command line (densepolicy/engines.py).

Prefix cache: vLLM's /metrics counters (`vllm:prefix_cache_queries_total`, `..._hits_total`) give
the hit rate achieved. The bound is the best any prefix cache can do for those requests: every
distinct prompt-token prefix computed once (SGLang's radix-tree bound, Theorem 3.1), from the
prompts actually sent, tokenized with the model's chat template. vLLM caches whole 16-token
blocks, and at least the last prompt token is always computed, so a second, block-aligned bound
(requests in the order sent, each able to reuse any full block an earlier one computed) shows how
much the block size costs; the gap between it and the achieved rate is what sibling requests
racing their parent's blocks (or eviction) cost.

    python bench/engines.py                    # about 10 minutes on 2 cores
    python bench/engines.py --skip_compiled    # without the compiled start-up measurement

Ends with `cache_vs_bound=<achieved hit rate / bound hit rate>` (gsm8k and babyai together) and
`ratio=<transformers wall time / vLLM wall time>` for the GSM8K workload.
"""
import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from common import MODEL, Server, log, run_trees
from dataset import load_tasks
from densepolicy import engines

BLOCK = 16  # vLLM's KV block size on the CPU


def workloads(args):
    gsm8k = dict(dataset="gsm8k", tasks=args.gsm8k_tasks, n_icl=8, base=3, max_steps=2, window_size=2,
                 max_rollouts=args.gsm8k_rollouts, max_tokens=96)
    babyai = dict(dataset="babyai_GoToRedBallGrey", tasks=args.babyai_tasks, n_icl=2, base=3, max_steps=2,
                  window_size=3, max_rollouts=6, max_tokens=40)
    return [gsm8k, babyai]


def agent_args(args, w) -> argparse.Namespace:
    return argparse.Namespace(
        base=w["base"], max_steps=w["max_steps"], window_size=w["window_size"], max_rollouts=w["max_rollouts"],
        max_sample_number=10_000, max_empty_rounds=1000, seed=0, n_icl=w["n_icl"], max_turn=10,
        max_tokens=w["max_tokens"], max_context=8192, exec_timeout=5.0, max_requests=64,
        contrastive_method="temperature", data_dir=args.data_dir)


def prompt_tokens(tokenizer, prompts) -> list[list[int]]:
    return [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False)
            for p in prompts]


def bounds(sequences: list[list[int]]) -> tuple[int, float, float]:
    """(prompt tokens, radix bound hit rate, block-aligned bound hit rate) of requests in send order."""
    total = sum(len(s) for s in sequences)
    # Distinct prefixes of a set of sequences: sort, and each adds its length minus its longest
    # common prefix with its sorted predecessor.
    ordered = sorted(map(tuple, sequences))
    distinct, previous = 0, ()
    for s in ordered:
        lcp = 0
        for a, b in zip(s, previous):
            if a != b:
                break
            lcp += 1
        distinct += len(s) - lcp
        previous = s
    seen, block_hits = set(), 0
    for s in sequences:
        full = (len(s) - 1) // BLOCK  # the last prompt token is always computed
        keys = [hash(tuple(s[:BLOCK * (b + 1)])) for b in range(full)]
        hit = 0
        while hit < full and keys[hit] in seen:
            hit += 1
        block_hits += hit * BLOCK
        seen.update(keys)
    return total, 1 - distinct / total, block_hits / total


def run_engine(engine, args, model_path, workdir, rows_of) -> dict:
    figures = {}
    with Server(engine, workdir, model_path) as server:
        figures["startup"] = server.startup
        for w in workloads(args):
            before = engines.prefix_cache_counters(server.port) if engine == "vllm" else None
            log(f"{engine}: {w['dataset']} trees on {w['tasks']} tasks")
            r = asyncio.run(run_trees(agent_args(args, w), w["dataset"], rows_of[w["dataset"]],
                                      server.base_url, server.served))
            if before is not None:
                after = engines.prefix_cache_counters(server.port)
                r["cache_queries"] = after.queries - before.queries
                r["cache_hits"] = after.hits - before.hits
            figures[w["dataset"]] = r
            log(f"{engine}: {w['dataset']}: {r['wall']:.1f} s, {r['requests']} requests, {r['tokens']} tokens")
    return figures


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gsm8k_tasks", type=int, default=8,
                   help="first N GSM8K train tasks (8 keep about 24 requests in flight; 2 only 6)")
    p.add_argument("--gsm8k_rollouts", type=int, default=4, help="rollouts per GSM8K tree")
    p.add_argument("--babyai_tasks", type=int, default=5, help="first N BabyAI train tasks (the demo's)")
    p.add_argument("--skip_compiled", action="store_true", help="do not time a compiled vLLM start-up")
    p.add_argument("--data_dir", default=os.environ.get("DATA_DIR"))
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop the servers
    from densepolicy.models import resolve_model
    from transformers import AutoTokenizer
    model_path = resolve_model(MODEL)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows_of = {w["dataset"]: load_tasks(w["dataset"], "train", args.data_dir)[:w["tasks"]] for w in workloads(args)}
    workdir = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    results = {}
    try:
        results["vllm"] = run_engine("vllm", args, model_path, workdir, rows_of)
        results["transformers"] = run_engine("transformers", args, model_path, workdir, rows_of)
        if not args.skip_compiled:
            engines.VLLM_CPU_EAGER = False
            try:
                with Server("vllm", workdir, model_path, timeout=400) as compiled:
                    results["compiled_startup"] = compiled.startup
            except RuntimeError as e:
                log(f"compiled vLLM did not start: {e}")
            engines.VLLM_CPU_EAGER = True
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"\n{'workload':<24} {'engine':<13} {'wall s':>7} {'requests':>8} {'req/s':>6} {'gen tokens':>10} "
          f"{'tok/s':>6} {'peak in flight':>14}")
    for w in workloads(args):
        for engine in ("transformers", "vllm"):
            r = results[engine][w["dataset"]]
            print(f"{w['dataset']:<24} {engine:<13} {r['wall']:>7.1f} {r['requests']:>8} "
                  f"{r['requests'] / r['wall']:>6.2f} {r['tokens']:>10} {r['tokens'] / r['wall']:>6.1f} {r['peak']:>14}")
    print(f"\nstart-up: vLLM eager {results['vllm']['startup']:.0f} s, "
          + (f"vLLM compiled {results['compiled_startup']:.0f} s, " if "compiled_startup" in results else "")
          + f"transformers serve {results['transformers']['startup']:.0f} s")

    print(f"\n{'prefix cache (vLLM)':<24} {'prompt tok':>10} {'queried':>10} {'achieved':>8} "
          f"{'radix bound':>11} {'16-tok bound':>12} {'vs radix':>8}")
    queries = hits = bound_hits = 0.0
    for w in workloads(args):
        r = results["vllm"][w["dataset"]]
        total, radix, block = bounds(prompt_tokens(tokenizer, r["prompts"]))
        achieved = r["cache_hits"] / r["cache_queries"] if r["cache_queries"] else 0.0
        queries += r["cache_queries"]
        hits += r["cache_hits"]
        bound_hits += radix * r["cache_queries"]
        print(f"{w['dataset']:<24} {total:>10} {r['cache_queries']:>10.0f} {achieved:>8.1%} {radix:>11.1%} "
              f"{block:>12.1%} {achieved / radix if radix else 0:>8.3f}")
    g_t, g_v = results["transformers"]["gsm8k"]["wall"], results["vllm"]["gsm8k"]["wall"]
    b_t = results["transformers"]["babyai_GoToRedBallGrey"]["wall"]
    b_v = results["vllm"]["babyai_GoToRedBallGrey"]["wall"]
    print(f"\nbabyai: transformers / vLLM wall time = {b_t / b_v:.2f}")
    print(f"cache_vs_bound={hits / bound_hits if bound_hits else 0:.3f}")
    print("ratio below = GSM8K workload, transformers serve wall time / vLLM CPU wall time")
    print(f"ratio={g_t / g_v:.2f}")


if __name__ == "__main__":
    main()
