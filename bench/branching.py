"""Benchmark: cost of getting a child state at tree depth d, snapshot (fork) vs replay.

snapshot: the parent's parked process forks and runs the new action (what the tree sampler does).
replay:   what the original did: a fresh episode, then every earlier action again, then the new
          one. Replay here runs all earlier actions in ONE step of a fresh episode, which is
          cheaper than the original (no new interpreter start, no per-action round trip), so the
          speed-up printed is a lower bound.

    python bench/branching.py          # prints a table, then `ratio=<replay / snapshot at depth 32>`
"""
import asyncio
import statistics
import time

from densepolicy.sandbox import SandboxPool

DEPTHS = (1, 4, 8, 16, 32)
REPEATS = 5

# Math-style actions of a few ms each, like the code a model writes for MATH/GSM8K problems.
ACTIONS = [
    "total_{i} = sum(k * k for k in range(20000))\nprint(total_{i} % 1000)",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
    "fibs_{i} = [fib(n) for n in range(250)]\nprint(len(str(fibs_{i}[-1])))",
    "primes_{i} = [p for p in range(2, 6000) if all(p % q for q in range(2, int(p ** 0.5) + 1))]\n"
    "len(primes_{i})",
    "from fractions import Fraction\nh_{i} = sum(Fraction(1, k) for k in range(1, 200))\n"
    "print(h_{i}.denominator % 97)",
    "import math\nrow_{i} = [math.comb(80, k) for k in range(81)]\nsum(row_{i}) == 2 ** 80",
    "grid_{i} = [[(a * b) % 7 for b in range(90)] for a in range(90)]\n"
    "print(sum(grid_{i}[a][a] for a in range(90)))",
]


def action(i):
    return ACTIONS[i % len(ACTIONS)].format(i=i)


async def main():
    rows = []
    async with SandboxPool(timeout=30) as pool:
        root, _ = await pool.new_episode()
        chain = [root]  # chain[k] = state after k actions
        for i in range(max(DEPTHS) - 1):
            s, r = await pool.run(chain[-1], action(i))
            assert not (r.timed_out or r.crashed), r.output
            chain.append(s)
        for d in DEPTHS:
            parent, code = chain[d - 1], action(d - 1)
            snap, rep = [], []
            for _ in range(REPEATS):
                t = time.perf_counter()
                child, r = await pool.run(parent, code)
                snap.append(time.perf_counter() - t)
                pool.release(child)

                t = time.perf_counter()
                fresh, _ = await pool.new_episode()
                if d > 1:
                    fresh, _ = await pool.run(fresh, "\n".join(action(i) for i in range(d - 1)))
                child2, r2 = await pool.run(fresh, code)
                rep.append(time.perf_counter() - t)
                assert r2.output == r.output, (r.output, r2.output)
                for s in (child2, fresh):
                    pool.release(s)
            rows.append((d, 1e3 * statistics.median(snap), 1e3 * statistics.median(rep)))

    print(f"{'depth':>5}  {'snapshot ms':>11}  {'replay ms':>9}  {'speed-up':>8}   "
          f"(median of {REPEATS}; ratio below = depth {max(DEPTHS)})")
    for d, s, r in rows:
        print(f"{d:>5}  {s:>11.1f}  {r:>9.1f}  {r / s:>7.1f}x")
    d, s, r = rows[-1]
    print(f"ratio={r / s:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
