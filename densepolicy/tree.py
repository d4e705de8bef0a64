"""The dense trajectory tree sampler as a pure algorithm (SPEC §5), and its offline rebuild (§8).

Nothing here knows about LLMs or sandboxes. A node is a tuple of labels (ints in 0..base-1); node
(l1..lk) is the state after k actions, and label lk says how the k-th action was sampled (see
`label_temperature`). A rollout is a full label sequence of length max_steps; the caller runs it
node by node, stops at the first done node, and reports its run index (the prefix up to that
node) and outcome (0/1).

Statistics, per explored node x (root excluded; it has no siblings):
  value(x)     = mean of the values of x's explored children, or x's own outcome at a leaf
                 (this is exactly what the leaf-to-root update of §5 maintains incrementally)
  visits(x)    = number of distinct rollouts whose run index passes through x (counted once)
  avg_depth(x) = mean over those rollouts of steps(rollout) - len(x), steps defaulting to
                 len(run index): how far below x episodes went on, on average

Two pure functions rebuild these from saved rollouts (`tree_stats`) and list sibling preference
pairs (`sibling_pairs`); `TreeSearch` keeps the same numbers live, round by round, for an async
driver (`run_tree`) that executes each round's rollouts concurrently.
"""
import asyncio
import itertools
import math
import random
from typing import NamedTuple

# The pair thresholds (SPEC §5, §8): every default and command-line flag refers to these.
THRE_VALUE = 0.5  # |value(chosen) - value(rejected)| a sibling pair needs to be selected
THRE_MAX = 8      # cap of the visit threshold min(floor(2^avg_depth), THRE_MAX) both sides must reach
MAX_LENGTH = 30   # pairs at a contrast step (depth of the contrasted action) deeper than this are not written
EPS = 1e-9  # means of 0/1 outcomes like 5/6 - 1/3 must not fall just under the 0.5 threshold


def add_pair_flags(parser, thre_value=THRE_VALUE, thre_max=THRE_MAX, max_length=MAX_LENGTH):
    """--thre_value, --thre_max and --max_length, for every script that extracts or marks pairs."""
    parser.add_argument("--thre_value", type=float, default=thre_value,
                        help="|value(chosen) - value(rejected)| a selected pair needs")
    parser.add_argument("--thre_max", type=int, default=thre_max,
                        help="cap of the visit threshold min(floor(2^avg_depth), THRE_MAX)")
    parser.add_argument("--max_length", type=int, default=max_length,
                        help="pairs at a contrast step deeper than this are left out")


class NodeStats(NamedTuple):
    """The statistics of one explored node (see the module docstring)."""
    value: float
    visits: int
    avg_depth: float


class SiblingPair(NamedTuple):
    """Two explored siblings with different values: chosen is the higher-value one."""
    chosen: tuple
    rejected: tuple
    chosen_stats: NodeStats
    rejected_stats: NodeStats
    selected: bool  # = pair_selected(chosen_stats, rejected_stats)


def run_key(labels) -> str:
    """A run index (or any node) as the key of the per-rollout maps of a result row: (0, 3, 1) ->
    "0,3,1" (JSON keys must be strings)."""
    return ",".join(map(str, labels))


def parse_run_key(text) -> tuple[int, ...]:
    """The inverse of `run_key`: "0,3,1" -> (0, 3, 1); ValueError when text is not such a list."""
    return tuple(int(x) for x in text.split(","))


def label_temperature(label):
    """Sampling temperature of the action a label stands for: 0 greedy, then 1.0 / 0.5 / 0.7."""
    if label == 0:
        return 0.0
    return (0.7, 1.0, 0.5)[label % 3]


def visit_threshold(avg_depth, thre_max=THRE_MAX):
    """Visits a node needs before its value is trusted: min(floor(2^avg_depth), thre_max).

    A node with d steps still to go below it roots a subtree of ~2^d outcomes even in a binary
    tree, so its mean needs that many samples, capped; a leaf (d = 0) is exact after one.
    """
    return min(math.floor(2.0 ** min(avg_depth, 62)), thre_max)


def pair_selected(a, b, thre_value=THRE_VALUE, thre_max=THRE_MAX):
    """Whether siblings with stats a, b (`NodeStats`) form a contrast pair.

    Each node's visits are checked against the threshold from its *own* avg_depth: the threshold
    measures how well that node's value is estimated, and §8 stores avg_depth per side.
    """
    (value_a, visits_a, depth_a), (value_b, visits_b, depth_b) = a, b  # plain triples too
    return (abs(value_a - value_b) >= thre_value - EPS
            and visits_a >= visit_threshold(depth_a, thre_max)
            and visits_b >= visit_threshold(depth_b, thre_max))


def selection_score(contrast, avg_depth, n, max_steps):
    """0.8·contrast^(1/4) + 0.2·avg_depth/D + 2·√(1+n)/(2+n): favour contested, deep, rarely
    visited nodes."""
    return 0.8 * contrast ** 0.25 + 0.2 * avg_depth / max_steps + 2.0 * math.sqrt(1 + n) / (2 + n)


def tree_stats(runs, steps=None):
    """Rebuild {node: NodeStats(value, visits, avg_depth)} from saved rollouts {run_index: outcome}.

    steps: optional {run_index: step count}; by default a rollout's steps = len(run_index).
    Lean on purpose (post-processing runs it over many trees): run indices sorted
    lexicographically come in depth-first order, so one pass with a stack of per-depth
    accumulators finalises each node when the walk leaves it and folds it into its parent; no
    tuple is hashed except to store the result. Values use fsum and depth sums stay integers, so
    the numbers are bit-identical to the live search's whatever the order of summation.
    """
    out = {}
    stack = []  # stack[d-1] = [visits, step sum, child values, outcome if a run ends] of prev[:d]
    prev = ()
    for run in sorted(runs) + [()]:  # the final () flushes the stack
        common, m = 0, min(len(prev), len(run))
        while common < m and prev[common] == run[common]:
            common += 1
        while len(stack) > common:  # the walk leaves prev[:d]: its subtree is complete
            d = len(stack)
            n, ssum, vals, own = stack.pop()
            if not vals:
                v = 1 if own else 0
            elif len(vals) == 1:
                v = vals[0]
            else:
                v = math.fsum(vals) / len(vals)
            out[prev[:d]] = NodeStats(v, n, (ssum - n * d) / n)
            if stack:
                top = stack[-1]
                top[0] += n
                top[1] += ssum
                top[2].append(v)
        if not run:
            break
        for _ in range(len(stack), len(run)):
            stack.append([0, 0, [], None])
        top = stack[-1]
        top[0] += 1
        top[1] += len(run) if steps is None else steps.get(run, len(run))
        top[3] = runs[run]
        prev = run
    return out


def _pairs(groups, stat, thre_value, thre_max):
    # Whether a node's visits pass its threshold is a property of the node: compute it once.
    out = []
    for kids in groups:
        if len(kids) < 2:
            continue
        rows = []
        for k in kids:
            s = stat(k)
            rows.append((k, s, s.visits >= visit_threshold(s.avg_depth, thre_max)))
        for i, (a, sa, oka) in enumerate(rows):
            for b, sb, okb in rows[i + 1:]:
                d = sa.value - sb.value
                if d == 0:
                    continue
                sel = oka and okb and abs(d) >= thre_value - EPS  # = pair_selected(sa, sb)
                out.append(SiblingPair(a, b, sa, sb, sel) if d > 0 else SiblingPair(b, a, sb, sa, sel))
    return out


def sibling_pairs(stats, thre_value=THRE_VALUE, thre_max=THRE_MAX):
    """Every pair of explored siblings with different values, from `tree_stats` output.

    Returns [SiblingPair(chosen, rejected, chosen_stats, rejected_stats, selected)]: chosen is
    the higher-value node, stats are `NodeStats`, selected = `pair_selected`.
    """
    groups = {}
    for node in stats:
        groups.setdefault(node[:-1], []).append(node)
    return _pairs(groups.values(), stats.__getitem__, thre_value, thre_max)


class TreeSearch:
    """One task's tree search (SPEC §5, policy mc_value, method temperature), driven in rounds.

    first_round() -> record(results) -> next_round() -> record(...) ... until next_round()
    returns [] (equivalently done()). Deterministic given the seed and the recorded results in
    the order given.
    """

    def __init__(self, base, max_steps, window_size, max_sample_number, max_rollouts=1000,
                 max_empty_rounds=1000, thre_value=THRE_VALUE, thre_max=THRE_MAX, seed=0):
        if not isinstance(base, int) or base < 1:
            raise ValueError(f"base must be a positive int (labels 0..base-1), got {base!r}")
        if max_steps < 1 or window_size < 1:
            raise ValueError("max_steps and window_size must be >= 1")
        self.B, self.D, self.W, self.M = base, max_steps, window_size, max_sample_number
        self.max_rollouts, self.max_empty_rounds = max_rollouts, max_empty_rounds
        self.thre_value, self.thre_max = thre_value, thre_max
        self.rng = random.Random(seed)
        self.runs = {}        # run index -> outcome (0/1), distinct, in recording order
        self.steps = {}       # run index -> step count
        self.value = {}       # node -> value
        self.visits = {}      # node -> rollouts through it (the data; what §8 can rebuild)
        self.depth_sum = {}   # node -> sum of remaining depths of those rollouts (int)
        self.picks = {}       # node -> times chosen by selection (the §5 "visits += 1")
        self.children = {(): []}  # node -> explored children, in discovery order; () = root
        self.closed = set()   # nodes whose every completion is redundant (see _close)
        self.closed_kids = {}  # node -> number of closed children
        self.rollouts = 0     # rollouts recorded, duplicates included (the cost cap)
        self.rounds = 0       # non-empty rounds handed out, first round included
        self.empty_rounds = 0  # consecutive rounds whose proposals were all redundant
        self.n_pairs = 0      # selected contrast pairs, kept current by record()
        self._group_count = {}  # parent -> selected pairs among its children

    # -- rounds ------------------------------------------------------------------------------
    def first_round(self):
        """B rollouts (i, 0, ..., 0): every first step, then greedy to depth D."""
        self.rounds += 1
        n = min(self.B, self.max_rollouts)
        return [(i,) + (0,) * (self.D - 1) for i in range(n)]

    def record(self, results):
        """Fold finished rollouts in: items (labels, run_index, outcome[, steps]).

        Along each run index: a new node gets visits 1, an existing one visits + 1 (once per
        rollout); then, leaf to root, every node on the path gets value = mean of its explored
        children's values (its own outcome when it has none, so a new node gets the outcome). A run index seen before (two rollouts of one round
        reaching the same new done node) changes nothing: the cached nodes give the same result.
        """
        dirty = set()
        for item in results:
            labels, run, outcome = tuple(item[0]), tuple(item[1]), 1 if item[2] else 0
            if not 1 <= len(run) <= len(labels) or labels[:len(run)] != run:
                raise ValueError(f"run index {run} is not a non-empty prefix of {labels}")
            steps = item[3] if len(item) > 3 else len(run)
            self.rollouts += 1
            if run in self.runs:
                continue
            self.runs[run] = outcome
            self.steps[run] = steps
            for j in range(1, len(run) + 1):  # root to leaf: a new node's parent exists
                node = run[:j]
                if node in self.visits:
                    self.visits[node] += 1
                    self.depth_sum[node] += steps - j
                else:
                    self.visits[node] = 1
                    self.depth_sum[node] = steps - j
                    self.children[node] = []
                    self.children[node[:-1]].append(node)  # node[:-1] is () at depth 1
            for j in range(len(run), 0, -1):  # leaf to root: children's values are final
                node = run[:j]
                kids = self.children[node]
                self.value[node] = (math.fsum(self.value[k] for k in kids) / len(kids)
                                    if kids else outcome)
            self._close(run)
            dirty.update(run[:j] for j in range(len(run)))  # parents of the nodes that changed
        # Only sibling groups under a changed node can change their pairs: recount just those.
        for parent in dirty:
            c = sum(1 for p in self._group_pairs(parent) if p.selected)
            self.n_pairs += c - self._group_count.get(parent, 0)
            self._group_count[parent] = c

    def _close(self, node):
        # A run index is closed: any rollout through it stops there (done) or ends there
        # (depth D) and repeats a known result. A node is closed once all B children are.
        # The root () closing means the whole tree is explored.
        while node not in self.closed:
            self.closed.add(node)
            if not node:
                return
            parent = node[:-1]
            self.closed_kids[parent] = self.closed_kids.get(parent, 0) + 1
            if self.closed_kids[parent] < self.B:
                return
            node = parent

    def next_round(self):
        """Select a node, propose completions, keep up to W; [] once done().

        Rounds whose proposals are all redundant are counted as empty and retried here, so the
        caller never sees an empty batch except at the end.
        """
        if not self.runs:
            raise RuntimeError("record the first round before asking for the next")
        while not self.done():
            # None: every explored node is closed but the root is not (the caller recorded only
            # part of the first round), so complete from the root itself.
            node = self.select() or ()
            cands = self.propose(node)
            if not cands:
                self.empty_rounds += 1
                continue
            self.empty_rounds = 0
            self.rounds += 1
            k = min(self.W, self.max_rollouts - self.rollouts, len(cands))
            return self.rng.sample(cands, k)
        return []

    def done(self):
        return (self.n_pairs >= self.M or self.rollouts >= self.max_rollouts
                or self.empty_rounds >= self.max_empty_rounds or self.exhausted)

    @property
    def exhausted(self):
        """No proposal can ever be new: every root-to-depth-D path hits a known run index."""
        return () in self.closed

    @property
    def score(self):
        """1 if any rollout solved the task."""
        return 1 if any(self.runs.values()) else 0

    # -- the steps of a round ----------------------------------------------------------------
    def node_score(self, node, _ext=None):
        """Selection score of an explored node (n = rollout visits + times picked)."""
        kids = self.children[node[:-1]]
        v = self.value[node]
        if len(kids) > 1:
            lo, hi = (_ext or {}).get(node[:-1]) or (min(self.value[k] for k in kids),
                                                     max(self.value[k] for k in kids))
            contrast = max(v - lo, hi - v)
        else:
            contrast = 0.0
        n = self.visits[node]
        return selection_score(contrast, self.depth_sum[node] / n,
                               n + self.picks.get(node, 0), self.D)

    def select(self):
        """Highest-scoring open explored node (seeded random tie-break); its pick count += 1.
        Closed nodes are skipped (they can only yield redundant proposals); None if none is
        open. The root is not a candidate: it has no siblings, and round 0 covers its children."""
        ext = {}
        for parent, kids in self.children.items():
            if len(kids) > 1:
                vals = [self.value[k] for k in kids]
                ext[parent] = (min(vals), max(vals))
        best, ties = -math.inf, []
        for node in self.visits:  # insertion order: deterministic
            if node in self.closed:
                continue
            s = self.node_score(node, ext)
            if s > best:
                best, ties = s, [node]
            elif s == best:
                ties.append(node)
        if not ties:
            return None
        node = ties[0] if len(ties) == 1 else self.rng.choice(ties)
        self.picks[node] = self.picks.get(node, 0) + 1
        return node

    def propose(self, node):
        """Up to 2W distinct random completions of node to depth D, minus redundant ones.

        When the node has at most 2W completions they are all enumerated, so an open node
        always yields at least one proposal there.
        """
        free, want = self.D - len(node), 2 * self.W
        if self.B ** free <= want:
            cands = [node + t for t in itertools.product(range(self.B), repeat=free)]
        else:
            seen, cands = set(), []
            while len(cands) < want:
                t = tuple(self.rng.choices(range(self.B), k=free))
                if t not in seen:
                    seen.add(t)
                    cands.append(node + t)
        return [p for p in cands if not self.is_redundant(p)]

    def is_redundant(self, labels):
        """A rollout of these labels cannot add a node: a prefix of it (itself included) is a
        known run index or a closed subtree, or it is itself an explored node.

        This is §5's rule (drop prefixes/extensions of solved run indices, prefixes of or equal
        to failed ones) plus extensions of failed run indices shorter than D: such a run index
        ended at a done node, so its extensions stop there too. What makes a proposal redundant
        is hitting a *run index*, never merely sharing the chosen prefix with earlier rollouts
        (the original's filter, which rejected everything once one rollout existed).
        """
        labels = tuple(labels)
        if labels in self.visits:
            return True
        return any(labels[:j] in self.closed for j in range(1, len(labels) + 1))

    # -- statistics --------------------------------------------------------------------------
    def stats(self):
        """{node: NodeStats(value, rollout visits, avg_depth)}, the same numbers tree_stats rebuilds."""
        return {n: self._stat(n) for n in self.visits}

    def _stat(self, node):
        return NodeStats(self.value[node], self.visits[node], self.depth_sum[node] / self.visits[node])

    def _group_pairs(self, parent):
        return _pairs([self.children[parent]], self._stat, self.thre_value, self.thre_max)

    def _live_pairs(self):
        return _pairs(self.children.values(), self._stat, self.thre_value, self.thre_max)

    def contrast_pairs(self):
        """Selected sibling pairs as SiblingPair(chosen, rejected, chosen_stats, rejected_stats, True).

        Visits here are rollout visits (selection picks excluded), so the live count that stops
        the search is exactly the number of selected pairs §8 rebuilds from the saved rollouts.
        """
        return [p for p in self._live_pairs() if p.selected]


async def run_tree(search, rollout_fn):
    """Drive `search` to the end, each round's rollouts concurrently; returns the search.

    rollout_fn(labels) is an async callable returning (run_index, outcome) or
    (run_index, outcome, steps). Contract: it runs labels node by node from the task's start,
    stops at the first done node, and returns that prefix (length >= 1) and 0/1. Nodes must be
    cached per task (node -> its action and resulting state), so that every rollout through a
    node reuses the same action: that is what makes the tree a tree and the statistics valid.
    Rollouts of one round run concurrently and may share a not-yet-expanded prefix, so the
    cache must also make concurrent requests for one node wait on a single expansion (e.g. one
    future per node). Results are recorded in proposal order, so runs are reproducible.
    """
    batch = search.first_round()
    while batch:
        outs = await asyncio.gather(*(rollout_fn(labels) for labels in batch))
        search.record([(labels, *out) for labels, out in zip(batch, outs)])
        batch = search.next_round()
    return search
