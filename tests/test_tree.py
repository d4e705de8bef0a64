"""Tree sampler (SPEC §5, §8): hand-computed small trees, the rules, stopping, determinism,
offline rebuild == live search, and the async driver with a scripted policy."""
import asyncio
import math
import time
import zlib

import pytest

from densepolicy.tree import (TreeSearch, label_temperature, pair_selected, run_tree,
                              selection_score, sibling_pairs, tree_stats, visit_threshold)

R2 = 2 * math.sqrt(2) / 3  # exploration term 2·√(1+n)/(2+n) at n = 1


# -- a scripted environment: done/outcome is a fixed function of the node ----------------------
def node_state(node):
    """(done, outcome) after the node's last action; deterministic, so it behaves like a cache."""
    h = zlib.crc32(bytes(node))
    if len(node) >= 2 and h % 5 == 0:
        return True, 1          # solved here
    if h % 13 == 0:
        return True, 0          # e.g. context exhausted here
    return False, 0


def play(labels):
    """Run labels node by node, stop at the first done node: (run_index, outcome)."""
    for k in range(1, len(labels) + 1):
        done, outcome = node_state(tuple(labels[:k]))
        if done:
            return tuple(labels[:k]), outcome
    return tuple(labels), 0


async def async_play(labels):
    await asyncio.sleep(0)
    return play(labels)


def feed(search, rollouts):
    """Record [(labels, outcome)] whose run index is the full label sequence."""
    search.record([(l, l, o) for l, o in rollouts])


# -- labels and formulas ---------------------------------------------------------------------
def test_label_temperature():
    assert [label_temperature(l) for l in range(8)] == [0.0, 1.0, 0.5, 0.7, 1.0, 0.5, 0.7, 1.0]


def test_visit_threshold_and_selection_score():
    # min(floor(2^d), 8): d=0 -> 1, d=1 -> 2, d=1.5 -> floor(2.83)=2, d=2.9 -> 7, d=3 -> 8, d=30 -> 8
    assert [visit_threshold(d) for d in (0, 1, 1.5, 2.9, 3, 30)] == [1, 2, 2, 7, 8, 8]
    assert visit_threshold(2.9, thre_max=4) == 4
    # 0.8·0.0625^(1/4) + 0.2·3/8 + 2·√4/5 = 0.4 + 0.075 + 0.8 = 1.275
    assert selection_score(0.0625, 3, 3, 8) == pytest.approx(1.275)
    # no contrast, leaf, n = 0: 2·1/2 = 1
    assert selection_score(0.0, 0, 0, 8) == pytest.approx(1.0)


def test_pair_selected_rule():
    assert pair_selected((1, 1, 0.0), (0, 1, 0.0))            # leaves: need 1 visit each
    assert not pair_selected((1, 1, 1.0), (0, 1, 1.0))        # avg_depth 1: need 2
    assert pair_selected((1, 2, 1.0), (0.5, 2, 1.0))          # |Δ| = 0.5 counts
    assert not pair_selected((1, 2, 1.0), (0.6, 2, 1.0))      # |Δ| = 0.4
    assert not pair_selected((1, 7, 5.0), (0, 100, 5.0))      # deep: capped at 8, 7 < 8
    assert pair_selected((1, 8, 5.0), (0, 8, 5.0))
    assert pair_selected((1, 4, 5.0), (0, 4, 5.0), thre_max=4)
    assert pair_selected((5 / 6, 1, 0), (1 / 3, 1, 0))        # float 0.49999.. must not lose


# -- hand-computed small trees ---------------------------------------------------------------
def test_b2_d2_by_hand():
    s = TreeSearch(base=2, max_steps=2, window_size=2, max_sample_number=10, seed=0)
    assert s.first_round() == [(0, 0), (1, 0)]
    feed(s, [((0, 0), 1), ((1, 0), 0)])
    # (0,0): v1 n1 d0   (0,): v1 n1 d1   (1,0): v0 n1 d0   (1,): v0 n1 d1
    assert s.stats() == {(0, 0): (1, 1, 0.0), (0,): (1, 1, 1.0),
                         (1, 0): (0, 1, 0.0), (1,): (0, 1, 1.0)}
    # (0,) vs (1,): |Δ| = 1 but avg_depth 1 needs floor(2^1) = 2 visits, both have 1
    assert s.contrast_pairs() == [] and s.n_pairs == 0
    assert sibling_pairs(s.stats()) == [((0,), (1,), (1, 1, 1.0), (0, 1, 1.0), False)]
    # selection: (0,) and (1,) are the open nodes; each: contrast 1, avg_depth 1/D=2, n=1
    # 0.8·1 + 0.2·1/2 + 2·√2/3 = 1.8428...
    assert s.node_score((1,)) == pytest.approx(0.8 + 0.1 + R2)
    assert s.node_score((0,)) == pytest.approx(1.8428090415820634)

    feed(s, [((0, 1), 0)])
    # (0,1): v0 n1 d0; (0,): v = mean(1, 0) = 0.5, n 2, d = (1 + 1)/2 = 1
    assert s.stats()[(0, 1)] == (0, 1, 0.0)
    assert s.stats()[(0,)] == (0.5, 2, 1.0)
    # (0,0) > (0,1): leaves, |Δ| 1 -> selected; (0,) vs (1,): |Δ| .5, (1,) has 1 < 2 visits
    assert [(p[0], p[1]) for p in s.contrast_pairs()] == [((0, 0), (0, 1))]
    feed(s, [((1, 1), 0)])
    # (1,): v = mean(0, 0) = 0, n 2 -> (0,) vs (1,) now selected; (1,0)/(1,1) equal: no pair
    assert s.stats()[(1,)] == (0, 2, 1.0)
    assert {(p[0], p[1]) for p in s.contrast_pairs()} == {((0, 0), (0, 1)), ((0,), (1,))}
    assert s.n_pairs == 2 and s.score == 1
    assert s.exhausted  # all 4 leaves known


def test_value_is_mean_of_children_not_of_outcomes_and_early_done():
    s = TreeSearch(base=2, max_steps=3, window_size=2, max_sample_number=10)
    s.first_round()
    # (0,0,0) stops at (0,) solved after 1 step; (1,0,0) runs to depth 3 and fails
    s.record([((0, 0, 0), (0,), 1), ((1, 0, 0), (1, 0, 0), 0)])
    # (0,): v1 n1 d0 (a leaf: threshold 1); (1,): v0 n1 d2 (threshold floor(2^2) = 4)
    assert s.stats()[(0,)] == (1, 1, 0.0)
    assert s.stats()[(1,)] == (0, 1, 2.0)
    feed(s, [((1, 0, 1), 1), ((1, 1, 0), 0)])
    # (1,0) = mean(0, 1) = .5; (1,1) = 0; (1,) = mean(.5, 0) = .25 (outcome mean would be 1/3)
    st = s.stats()
    assert st[(1, 0)] == (0.5, 2, 1.0) and st[(1, 1)] == (0, 1, 1.0)
    assert st[(1,)] == (0.25, 3, 2.0)
    assert ((0,), (1,)) not in {(p[0], p[1]) for p in s.contrast_pairs()}  # 3 < 4 visits
    feed(s, [((1, 1, 1), 0)])
    assert s.stats()[(1,)] == (0.25, 4, 2.0)
    assert ((0,), (1,)) in {(p[0], p[1]) for p in s.contrast_pairs()}    # |Δ| .75, 4 >= 4


def test_visits_counted_once_per_rollout():
    s = TreeSearch(base=3, max_steps=4, window_size=2, max_sample_number=10)
    feed(s, [((0, 0, 0, 0), 0)])
    assert all(n == 1 for _, n, _ in s.stats().values())
    feed(s, [((0, 1, 0, 0), 1), ((0, 1, 2, 0), 0)])
    st = s.stats()
    assert st[(0,)][1] == 3 and st[(0, 1)][1] == 2 and st[(0, 1, 2)][1] == 1
    # (0,1) = mean(1, 0) = .5; (0,) = mean((0,0)=0, (0,1)=.5) = .25
    assert st[(0, 1)][0] == 0.5 and st[(0,)][0] == 0.25
    # a duplicate run index (two rollouts of one round ending at one new done node) is a no-op
    before = s.stats()
    s.record([((0, 1, 0, 2), (0, 1, 0), 1)])        # makes (0,1,0) a run index: new leaf
    s.record([((0, 2, 1, 1), (0, 2), 0), ((0, 2, 2, 2), (0, 2), 0)])
    assert s.stats()[(0, 2)] == (0, 1, 0.0) and s.rollouts == 6
    assert before[(0, 0)] == s.stats()[(0, 0)]


def test_steps_give_avg_depth():
    # run (0,1) took 4 steps (e.g. steps counted differently from labels), (0,0,0) took 3
    st = tree_stats({(0, 1): 1, (0, 0, 0): 0}, steps={(0, 1): 4})
    # (0,): ((4-1) + (3-1)) / 2 = 2.5; (0,1): 4 - 2 = 2; (0,0): 3 - 2 = 1
    assert st[(0,)] == (0.5, 2, 2.5) and st[(0, 1)] == (1, 1, 2.0) and st[(0, 0)] == (0, 1, 1.0)


def test_selection_picks_and_tie_break():
    s = TreeSearch(base=2, max_steps=2, window_size=2, max_sample_number=10, seed=3)
    feed(s, [((0, 0), 1), ((1, 0), 0)])
    # (0,) and (1,) tie at 1.8428; leaves are closed and never selected
    first = s.select()
    assert first in {(0,), (1,)} and s.picks[first] == 1
    # the pick lowers its exploration term (n = 2: 2·√3/4 = .866 < .943), so the other wins
    assert s.node_score(first) == pytest.approx(0.8 + 0.1 + 2 * math.sqrt(3) / 4)
    second = s.select()
    assert {first, second} == {(0,), (1,)}
    assert s.stats()[first][1] == 1   # picks do not touch the rollout visits


# -- proposals and the redundancy filter -----------------------------------------------------
def test_redundancy_filter():
    s = TreeSearch(base=3, max_steps=3, window_size=5, max_sample_number=10)
    s.record([((0, 1, 0), (0, 1), 1),          # solved early at (0,1)
              ((2, 0, 0), (2, 0, 0), 0),       # failed at full depth
              ((1, 2, 0), (1, 2), 0)])         # failed early: (1,2) is a done node
    red = s.is_redundant
    assert red((0, 1, 2)) and red((0, 1, 0))   # extensions of a solved run index
    assert red((0, 1)) and red((0,))           # equal to / prefix of a solved run index
    assert red((2, 0, 0)) and red((2, 0))      # equal to / prefix of a failed one
    assert red((1, 2, 1))                      # extension of an early-failed one: stops at (1,2)
    for kept in [(2, 0, 1), (2, 1, 0), (0, 2, 2), (0, 0, 0), (1, 0, 0), (1, 1, 2)]:
        assert not red(kept)
    # (2,) has 3^2 = 9 <= 2W completions: all enumerated, only (2,0,0) dropped
    assert sorted(s.propose((2,))) == [(2, a, b) for a in range(3) for b in range(3)
                                       if (a, b) != (0, 0)]


def test_not_everything_rejected_after_one_rollout():
    s = TreeSearch(base=10, max_steps=8, window_size=8, max_sample_number=10, seed=1)
    s.first_round()
    feed(s, [((0,) * 8, 0)])
    props = s.propose((0,))
    assert len(props) == 16 and len(set(props)) == 16
    assert all(p[0] == 0 and len(p) == 8 and p != (0,) * 8 for p in props)
    batch = s.next_round()
    assert len(batch) == 8 and all(p[0] == 0 for p in batch)  # (0,) is the only open node


# -- stopping ------------------------------------------------------------------------------
def test_stops_at_max_rollouts():
    s = TreeSearch(base=3, max_steps=6, window_size=2, max_sample_number=10 ** 6,
                   max_rollouts=7, seed=0)
    asyncio.run(run_tree(s, async_play))
    assert s.rollouts == 7 and s.done()


def test_fully_explored_tree_terminates():
    s = TreeSearch(base=2, max_steps=3, window_size=4, max_sample_number=10 ** 6, seed=0)

    async def parity(labels):
        return labels, sum(labels) % 2

    t = time.perf_counter()
    asyncio.run(run_tree(s, parity))
    assert time.perf_counter() - t < 1.0
    assert s.exhausted and s.done() and len(s.runs) == 8
    assert s.empty_rounds == 0 and s.rounds <= 8  # no spinning on empty rounds
    # with early done nodes (here every path through label 1 at step 1) it ends sooner
    s2 = TreeSearch(base=2, max_steps=4, window_size=1, max_sample_number=10 ** 6, seed=0)

    async def early(labels):
        return (labels[:1], 1) if labels[0] == 1 else (labels, 0)

    asyncio.run(run_tree(s2, early))
    assert s2.exhausted and len(s2.runs) == 1 + 8


def test_partial_first_round_completes_from_root():
    s = TreeSearch(base=3, max_steps=1, window_size=4, max_sample_number=10 ** 6)
    assert s.first_round() == [(0,), (1,), (2,)]
    s.record([((0,), (0,), 1)])               # only one recorded: (0,) closed, root still open
    assert sorted(s.next_round()) == [(1,), (2,)]


def test_empty_rounds_are_counted_and_stop():
    s = TreeSearch(base=3, max_steps=5, window_size=2, max_sample_number=10 ** 6,
                   max_empty_rounds=5)
    feed(s, [((0, 0, 0, 0, 0), 0)])
    s.propose = lambda node: []               # every proposal redundant
    assert s.next_round() == [] and s.empty_rounds == 5 and s.done()


def test_stops_when_m_pairs_found():
    s = TreeSearch(base=10, max_steps=8, window_size=8, max_sample_number=20, seed=0)
    asyncio.run(run_tree(s, async_play))
    assert s.n_pairs >= 20 and len(s.contrast_pairs()) == s.n_pairs
    assert s.rollouts < 1000 and not s.exhausted
    assert s.done() and s.next_round() == []


def test_next_round_needs_first_round():
    with pytest.raises(RuntimeError):
        TreeSearch(base=2, max_steps=2, window_size=1, max_sample_number=1).next_round()
    with pytest.raises(ValueError):
        TreeSearch(base=None, max_steps=2, window_size=1, max_sample_number=1)
    s = TreeSearch(base=2, max_steps=2, window_size=1, max_sample_number=1)
    with pytest.raises(ValueError):
        s.record([((0, 0), (1,), 1)])  # run index must be a prefix of the labels


# -- determinism and rebuild -----------------------------------------------------------------
def _full_run(seed, **kw):
    s = TreeSearch(base=kw.pop("base", 10), max_steps=kw.pop("max_steps", 8),
                   window_size=kw.pop("window_size", 8),
                   max_sample_number=kw.pop("max_sample_number", 64), seed=seed, **kw)
    asyncio.run(run_tree(s, async_play))
    return s


def test_deterministic_given_seed():
    a, b, c = _full_run(7), _full_run(7), _full_run(8)
    assert list(a.runs.items()) == list(b.runs.items())
    assert a.stats() == b.stats() and a.picks == b.picks
    assert list(a.runs) != list(c.runs)


def test_rebuild_equals_live():
    async def play_with_steps(labels):
        run, outcome = play(labels)
        return run, outcome, len(run) + run[-1] % 3   # steps need not equal len(run)

    for seed in range(3):
        s = TreeSearch(base=10, max_steps=12, window_size=8, max_sample_number=128, seed=seed)
        asyncio.run(run_tree(s, play_with_steps))
        st = tree_stats(s.runs, s.steps)
        assert st == s.stats()                      # bit-identical values/visits/avg_depth
        pairs = sibling_pairs(st)
        sel = {(p[0], p[1], p[2], p[3]) for p in pairs if p[4]}
        assert sel == {(p[0], p[1], p[2], p[3]) for p in s.contrast_pairs()}
        assert len(sel) == s.n_pairs
        assert all(p[2][0] > p[3][0] for p in pairs)  # chosen = higher value
        assert len(pairs) > len(sel)                  # unselected pairs are listed too


# -- the async driver end to end ---------------------------------------------------------------
def test_run_tree_end_to_end_finds_m_pairs():
    s = TreeSearch(base=10, max_steps=8, window_size=8, max_sample_number=64, seed=0)
    out = asyncio.run(run_tree(s, async_play))
    assert out is s and s.n_pairs >= 64 and s.score == 1
    for chosen, rejected, cs, rs, sel in s.contrast_pairs():
        assert chosen[:-1] == rejected[:-1] and cs[0] - rs[0] >= 0.5 and sel


def test_prefix_cache_expands_each_node_once():
    expansions = {}
    cache = {}   # node -> future of (done, outcome): concurrent rollouts wait on one expansion

    async def expand(node):
        expansions[node] = expansions.get(node, 0) + 1
        await asyncio.sleep(0)   # let other rollouts of the round interleave
        return node_state(node)

    async def cached_rollout(labels):
        for k in range(1, len(labels) + 1):
            node = tuple(labels[:k])
            if node not in cache:
                cache[node] = asyncio.ensure_future(expand(node))
            done, outcome = await cache[node]
            if done:
                return node, outcome
        return tuple(labels), 0

    s = TreeSearch(base=10, max_steps=8, window_size=16, max_sample_number=64, seed=0)
    asyncio.run(run_tree(s, cached_rollout))
    assert max(expansions.values()) == 1
    assert set(expansions) == set(s.visits)   # one model call per tree node, none wasted


def test_speed():
    # B=10, D=32, a few hundred rollouts: milliseconds per round
    s = TreeSearch(base=10, max_steps=32, window_size=16, max_sample_number=10 ** 6,
                   max_rollouts=400, seed=0)
    t = time.perf_counter()
    asyncio.run(run_tree(s, async_play))
    per_round = (time.perf_counter() - t) / s.rounds
    assert s.rollouts == 400 and per_round < 0.05
    t = time.perf_counter()
    for _ in range(20):
        tree_stats(s.runs, s.steps)
    assert (time.perf_counter() - t) / 20 < 0.05
