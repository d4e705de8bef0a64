"""The figures process_result writes next to a pairs file, and the geometry every tree drawing uses.

    PairStats         fixed-bin histograms of pair statistics, accumulated task by task -> one PNG
    draw_tree_svg     one tree as a static SVG: values, visits, temperatures, selected pairs marked
    layout            where each node of a tree is drawn (the viewer's too, densepolicy/viewer.py)
    node_temperature  the temperature a node's action was sampled at, as every drawing shows it
"""
import math

from densepolicy.results import AtomicFile, save_figure
from densepolicy.tree import label_temperature, run_key


class PairStats:
    """Fixed-bin histograms of pair statistics, accumulated in O(1) memory."""

    def __init__(self):
        self.per_task = {}       # pairs per task -> tasks
        self.per_task_sel = {}
        self.delta = [0] * 20    # |Δvalue| in 20 bins over (0, 1]
        self.delta_sel = [0] * 20
        self.step = {}           # contrast step -> pairs
        self.step_sel = {}
        self.visits = {}         # floor(log2(min visits)) -> pairs
        self.tasks = self.pairs = self.selected = self.dropped_identical = self.dropped_truncated = 0
        self.dropped_sandbox_error = 0
        self.empty = 0

    def add_task(self, pairs, dropped):
        self.tasks += 1
        self.dropped_identical += dropped["identical"]
        self.dropped_truncated += dropped["truncated"]
        self.dropped_sandbox_error += dropped["sandbox_error"]
        n = len(pairs)
        ns = sum(1 for p in pairs if p["selected"])
        self.per_task[n] = self.per_task.get(n, 0) + 1
        self.per_task_sel[ns] = self.per_task_sel.get(ns, 0) + 1
        self.pairs += n
        self.selected += ns
        for p in pairs:
            b = min(int(abs(p["positive_value"] - p["negative_value"]) * 20 - 1e-9), 19)
            s = p["contrast_step"]
            v = int(math.log2(max(1, min(p["positive_visit_number"], p["negative_visit_number"]))))
            self.delta[b] += 1
            self.step[s] = self.step.get(s, 0) + 1
            self.visits[v] = self.visits.get(v, 0) + 1
            if p["selected"]:
                self.delta_sel[b] += 1
                self.step_sel[s] = self.step_sel.get(s, 0) + 1

    def plot(self, path):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
        fig, ax = plt.subplots(2, 2, figsize=(11, 8))

        def bars(a, counts, sel, xlabel, width=0.8):
            xs = sorted(counts)
            a.bar(xs, [counts[x] for x in xs], width=width, color="#9ab", label="all pairs")
            if sel is not None:
                a.bar(xs, [sel.get(x, 0) for x in xs], width=width * 0.6, color="#c53",
                      label="selected")
                a.legend()
            a.set_xlabel(xlabel)
            a.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # counts, steps, log2 bins: no 0.7

        bars(ax[0, 0], {k: v for k, v in self.per_task.items()}, None, "pairs per task (tasks)")
        ax[0, 0].bar(sorted(self.per_task_sel), [self.per_task_sel[k] for k in sorted(self.per_task_sel)],
                     width=0.5, color="#c53", label="selected pairs per task")
        ax[0, 0].legend()
        bars(ax[0, 1], dict(enumerate(self.delta)), dict(enumerate(self.delta_sel)),
             "|value(chosen) - value(rejected)| (bin of 0.05)")
        ax[0, 1].set_xticks(range(0, 20, 4), [f"{i / 20:.1f}" for i in range(0, 20, 4)])
        bars(ax[1, 0], self.step, self.step_sel, "contrast step (depth of the contrasted action)")
        bars(ax[1, 1], self.visits, None, "floor(log2(min visits of the two siblings))")
        fig.suptitle(f"{self.tasks} tasks, {self.pairs} pairs, {self.selected} selected, "
                     f"dropped: {self.dropped_identical} identical-action, {self.dropped_truncated} cut at max_tokens"
                     + (f", {self.dropped_sandbox_error} over a sandbox failure" if self.dropped_sandbox_error else ""))
        fig.tight_layout()
        save_figure(fig, path, dpi=80)


# ------------------------------------------------------------------------------ tree drawings
def layout(nodes) -> dict:
    """{node: (depth, slot)} of the nodes of one tree and its root (): one slot per leaf, leaves
    in label order, a parent at the middle of its first and last child's slots."""
    kids = {(): []}
    for node in sorted(nodes):
        kids.setdefault(node, [])
        kids.setdefault(node[:-1], []).append(node)
    pos, leaves = {}, [0]

    def place(node):  # recursion depth = tree depth (<= max_steps)
        ks = kids[node]
        if ks:
            slots = [place(k) for k in ks]
            slot = (slots[0] + slots[-1]) / 2
        else:
            slot = leaves[0]
            leaves[0] += 1
        pos[node] = (len(node), slot)
        return slot

    place(())
    return pos


def node_temperature(node, policy):
    """The temperature node's action was sampled at: what `policy` (the per-step temperatures a
    run through node records) holds at node's depth, else what node's last label stands for."""
    d = len(node)
    if isinstance(policy, list) and len(policy) >= d and isinstance(policy[d - 1], (int, float)):
        return policy[d - 1]
    return label_temperature(node[-1])


def draw_tree_svg(path, runs, stats, pairs, temperatures, title=""):
    """One tree as SVG: a node per explored label prefix (label, temperature, value, visits);
    chosen edges of selected pairs green, rejected ones red dashed; solved run ends gold.
    temperatures: {node: node_temperature}."""
    pos = layout(stats)
    dx, dy, pad = 46, 70, 30
    depth = max((len(n) for n in stats), default=0)
    slots = max(slot for _, slot in pos.values()) + 1
    width, height = int(max(slots, 1) * dx + 2 * pad), int(depth * dy + 2 * pad + 40)
    chosen = {tuple(p["positive_run_index"]) for p in pairs if p["selected"]}
    rejected = {tuple(p["negative_run_index"]) for p in pairs if p["selected"]}
    solved = {r for r, o in runs.items() if o}

    def xy(node):  # the root on top, a row per depth
        d, x = pos[node]
        return pad + x * dx + dx / 2, pad + 40 + d * dy

    def esc(s):
        return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="monospace" font-size="9">',
           f'<text x="{pad}" y="18" font-size="13">{esc(title)}</text>',
           f'<text x="{pad}" y="32">green: chosen, red dashed: rejected (selected pairs); '
           f'gold ring: solved run end; node text: label, t=temperature, v=value, n=visits</text>']
    for node in stats:
        (x1, y1), (x2, y2) = xy(node[:-1]), xy(node)
        style = 'stroke="#bbb" stroke-width="1"'
        if node in chosen:
            style = 'stroke="#2a2" stroke-width="3"'
        elif node in rejected:
            style = 'stroke="#d22" stroke-width="3" stroke-dasharray="5,3"'
        out.append(f'<line x1="{x1:.0f}" y1="{y1:.0f}" x2="{x2:.0f}" y2="{y2:.0f}" {style}/>')
    x, y = xy(())
    out.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="6" fill="#444"/>')
    for node, (v, n, _avg_depth) in stats.items():
        x, y = xy(node)
        temp = temperatures[node]
        red, green = int(220 * (1 - v)), int(180 * v)
        ring = ' stroke="#e90" stroke-width="3"' if node in solved else ' stroke="#333"'
        out.append(f'<circle cx="{x:.0f}" cy="{y:.0f}" r="7" fill="rgb({red},{green},60)"{ring}>'
                   f'<title>{esc(run_key(node))}</title></circle>')
        out.append(f'<text x="{x:.0f}" y="{y + 17:.0f}" text-anchor="middle">{node[-1]} t={temp:g}</text>')
        out.append(f'<text x="{x:.0f}" y="{y + 27:.0f}" text-anchor="middle">v={v:.2f} n={n}</text>')
    out.append("</svg>")
    with AtomicFile(path) as w:
        w.write("\n".join(out))
