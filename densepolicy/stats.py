"""Accuracy with an interval, and a paired test of two models on the same episodes.

Wilson's score interval for a binomial proportion (better than the normal one near 0 and 1 and on
a few hundred episodes), and the exact McNemar test: of the episodes where the two models differ,
how surprising is the split between "only A solved it" and "only B solved it" if neither is better
(a two-sided binomial test with p = 1/2 on the discordant pairs).
"""
import math
from dataclasses import dataclass

Z95 = 1.959963984540054  # two-sided 95%


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The 95% Wilson score interval of successes/n, as fractions."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (1.0 when there are none)."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


@dataclass
class PairedComparison:
    episodes: int
    base_acc: float
    trained_acc: float
    base_ci: tuple[float, float]
    trained_ci: tuple[float, float]
    only_base: int      # episodes the base model solved and the trained one did not
    only_trained: int
    p_value: float

    def as_dict(self) -> dict:
        return {"episodes": self.episodes, "base_acc": self.base_acc, "trained_acc": self.trained_acc,
                "base_ci": list(self.base_ci), "trained_ci": list(self.trained_ci),
                "only_base": self.only_base, "only_trained": self.only_trained, "p_value": self.p_value}


def compare(base: dict, trained: dict) -> PairedComparison:
    """Base against trained on the episodes both have ({episode key: solved}); others are ignored."""
    keys = sorted(set(base) & set(trained))
    if not keys:
        raise ValueError("the two models share no episode")
    b = [bool(base[k]) for k in keys]
    t = [bool(trained[k]) for k in keys]
    only_base = sum(x and not y for x, y in zip(b, t))
    only_trained = sum(y and not x for x, y in zip(b, t))
    n = len(keys)
    return PairedComparison(n, sum(b) / n, sum(t) / n, wilson_interval(sum(b), n), wilson_interval(sum(t), n),
                            only_base, only_trained, mcnemar_exact(only_base, only_trained))


def paired_bootstrap_p(base: dict, trained: dict, resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided p-value of "trained and base solve the same share" by a paired bootstrap over
    tasks ({task: share of its episodes solved}): episodes of one task are not independent, so
    tasks, not episodes, are resampled. The estimate counts the observed sample as one resample,
    so it is never 0: its floor, 2 / (resamples + 1), is the test's resolution."""
    import random
    keys = sorted(set(base) & set(trained))
    if not keys:
        raise ValueError("the two models share no task")
    diffs = [trained[k] - base[k] for k in keys]
    if not any(diffs):
        return 1.0
    rng, n = random.Random(seed), len(diffs)
    below = above = 0
    for _ in range(resamples):
        m = sum(diffs[rng.randrange(n)] for _ in range(n))
        below += m <= 0
        above += m >= 0
    return min(1.0, 2 * (min(below, above) + 1) / (resamples + 1))
