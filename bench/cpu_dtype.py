"""Benchmark: decoding throughput of the CPU engine in float32 against vLLM's own CPU choice
(`--dtype auto`: bfloat16), and how it falls with the prompt's length: the measurement behind the
launcher's default (VLLM_CPU_DTYPE: bfloat16 on a CPU with native bf16, float32 elsewhere). One
server per arm, started with the launcher's own command line (densepolicy/engines.py); the
embedded model; no tree agent, only the server.

Requests: chat prompts of --lengths sentences sharing their prefix (as the agents' in-context
examples do), each ending in its own task line; exactly --tokens tokens out (`ignore_eos`,
`min_tokens`) at temperature 1.0, so every arm generates the same number of tokens. For each
setting, 2 x --in_flight requests sent at once, after a warm-up of 4.

    python bench/cpu_dtype.py                 # about 5 minutes on 2 cores
    python bench/cpu_dtype.py --lengths 10 20 40

Ends with `ratio=<float32 tok/s / auto tok/s>` at the largest number in flight and the longest
prompt (> 1: float32 is faster on this CPU).
"""
import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import openai

from common import Server, log
from densepolicy import engines, models

SENTENCE = "The grey room has a red ball {i} and a blue key near the door."


async def throughput(base_url, served, sentences, in_flight, tokens) -> tuple[float, int]:
    """Generated tokens per second over 2 x in_flight requests, and the prompt's token count."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none")
    system = " ".join(SENTENCE.format(i=i) for i in range(sentences))

    async def one(i):
        r = await client.chat.completions.create(
            model=served, max_tokens=tokens, temperature=1.0,
            messages=[{"role": "system", "content": system},
                      {"role": "user", "content": f"Task {i}: go to the red ball {i % 7}. Your action?"}],
            extra_body={"ignore_eos": True, "min_tokens": tokens})
        return r.usage.completion_tokens, r.usage.prompt_tokens

    await asyncio.gather(*[one(-1 - i) for i in range(4)])  # warm-up, and the prefix cached
    t0 = time.monotonic()
    done = await asyncio.gather(*[one(i + 10_000 * in_flight) for i in range(2 * in_flight)])
    seconds = time.monotonic() - t0
    await client.close()
    return sum(d[0] for d in done) / seconds, done[0][1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dtypes", nargs="+", default=["auto", "float32"], help="--dtype of each arm")
    p.add_argument("--in_flight", nargs="+", type=int, default=[16, 64], help="requests in flight")
    p.add_argument("--lengths", nargs="+", type=int, default=[40], help="prompt lengths, in sentences")
    p.add_argument("--tokens", type=int, default=48, help="tokens generated per request")
    args = p.parse_args()
    model_path = str(models.resolve_model("SmolLM2-135M-Instruct"))
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for dtype in args.dtypes:
            engines.VLLM_CPU_DTYPE = dtype  # server_command reads it when it builds the command
            with Server("vllm", Path(work), model_path) as server:
                for sentences in args.lengths:
                    for n in args.in_flight:
                        tps, prompt = asyncio.run(throughput(server.base_url, server.served, sentences, n,
                                                             args.tokens))
                        log(f"dtype {dtype}: {prompt}-token prompts, {n} in flight: {tps:.0f} tok/s")
                        rows.append((dtype, server.startup, prompt, n, tps))
    print("\n| dtype | start-up s | prompt tokens | in flight | generated tok/s |")
    print("|---|---|---|---|---|")
    for dtype, startup, prompt, n, tps in rows:
        print(f"| {dtype} | {startup:.0f} | {prompt} | {n} | {tps:.0f} |")
    if {"auto", "float32"} <= set(args.dtypes):
        key = (max(r[2] for r in rows), max(args.in_flight))
        tok = {r[0]: r[4] for r in rows if (r[2], r[3]) == key}
        print(f"ratio={tok['float32'] / tok['auto']:.2f}")


if __name__ == "__main__":
    main()
