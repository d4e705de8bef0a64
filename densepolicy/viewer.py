"""Look at dense trees: a tree result file -> one self-contained HTML page.

    render(result_csv, out_html, index=None)   one task (index) or every task of the file

A tree is drawn exactly as the pair extraction sees it: values and visits rebuilt from the
rollouts (pairs.parse_tree, tree.tree_stats), sibling pairs from pairs.tree_pairs with the same
thresholds, and the node layout of the pair drawings (pair_figures.layout). Each explored node is
an SVG box (run-index label, sampling temperature, value, visits); clicking it shows its action
and observation. Edges into chosen siblings are green, into rejected ones red dashed, thick when
the pair is selected; solved runs are gold. CSS, JS, SVG and the texts are all inline: the page
makes no request and opens offline.
"""
import html
import json
from pathlib import Path

from densepolicy.pair_figures import layout, node_temperature
from densepolicy.pairs import node_action, parse_tree, runs_through, tree_pairs
from densepolicy.results import AtomicFile, ResultFileError, iter_results
from densepolicy.tree import MAX_LENGTH, THRE_MAX, THRE_VALUE, run_key

BOX_W, BOX_H, GAP_X, ROW_H, PAD = 156, 34, 44, 42, 16
MAX_LABEL = 19  # characters of a run-index label drawn in a box; the panel shows it whole
MAX_CHIPS = 300  # solved-run buttons per task (in a scrolling strip); the tree shows them all


class ViewerError(ValueError):
    """Input that cannot be drawn; the message is one line naming the file (and row)."""


def _dict(x) -> dict:
    return x if isinstance(x, dict) else {}


# ---------------------------------------------------------------------------- one task's tree
def task_tree(row, thre_value=THRE_VALUE, thre_max=THRE_MAX, max_length=MAX_LENGTH) -> dict:
    """Everything the page shows of one result row. ValueError on a malformed tree row."""
    runs, _ = parse_tree(row)
    # The prompt only goes into pair histories, which the page does not show.
    pairs, stats, dropped = tree_pairs(row, [], thre_value, thre_max, max_length)
    history, policies = row.get("history"), row.get("policies")
    policies = policies if isinstance(policies, dict) else {}
    logs = _dict(row.get("log_infos"))
    run_logs = _dict(logs.get("runs"))  # (tree_pairs has checked history for a tree with runs)

    # Any run through a node holds its action; prefer one that goes on below it, whose history
    # also holds the observation.
    through = runs_through(sorted(runs))
    nodes = {}
    for node, (value, visits, avg_depth) in stats.items():
        d = len(node)
        rs = through[node]
        rep = next((r for r in rs if len(r) > d), rs[0])
        action, msgs = node_action(history, run_key(rep), d)
        obs = msgs[2 * d - 1] if len(msgs) > 2 * d - 1 else None
        temp = node_temperature(node, policies.get(run_key(rep)))
        # Log infos are informative only: a row without them is still drawn.
        steps = _dict(run_logs.get(run_key(rep))).get("steps")
        step = _dict(steps[d - 1]) if isinstance(steps, list) and len(steps) >= d else {}
        end = _dict(run_logs.get(run_key(node))) if node in runs else {}
        nodes[node] = dict(
            value=value, visits=visits, avg_depth=avg_depth, temp=temp, action=action,
            obs=obs.get("content") if isinstance(obs, dict) else None,
            outcome=runs.get(node), end_reason=end.get("end_reason"),
            finish=step.get("finish_reason"), tokens=step.get("completion_tokens"),
            runs=len(rs), solved_runs=sum(runs[r] for r in rs), pairs=[])
    for p in pairs:
        a, b = tuple(p["positive_run_index"]), tuple(p["negative_run_index"])
        dv = p["positive_value"] - p["negative_value"]
        nodes[a]["pairs"].append(("chosen", run_key(b), dv, p["selected"]))
        nodes[b]["pairs"].append(("rejected", run_key(a), dv, p["selected"]))
    for n in nodes.values():
        # An edge is drawn by its strongest role: selected pairs over unselected ones.
        sel = [r for r, _, _, s in n["pairs"] if s]
        n["roles"] = set(sel or [r for r, *_ in n["pairs"]])
        n["selected"] = bool(sel)
    solved = sorted(r for r, o in runs.items() if o)
    return dict(index=row.get("index"), input=row.get("input"), target=row.get("target"),
                score=row.get("score"), nodes=nodes, solved=solved, rollouts=len(runs),
                pairs=len(pairs), selected=sum(p["selected"] for p in pairs), dropped=dropped["identical"],
                rounds=logs.get("rounds"),
                on_solved={r[:d] for r in solved for d in range(1, len(r) + 1)})


# ----------------------------------------------------------------------------------- drawing
def _fmt(x, spec):
    return format(x, spec) if isinstance(x, (int, float)) else "?"


def _temp(t):
    # 0.0 / 0.5 / 0.7 / 1.0: one decimal at least, so a temperature never reads like a count.
    if not isinstance(t, (int, float)):
        return "?"
    text = f"{t:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _fill(v):
    # Pale red (value 0) to pale green (1): the box colour says how good the subtree is.
    lo, hi = (253, 226, 223), (214, 243, 214)
    return "rgb(%d,%d,%d)" % tuple(round(a + (b - a) * v) for a, b in zip(lo, hi))


def tree_svg(tree) -> str:
    nodes = tree["nodes"]
    pos = layout(nodes)  # {node: (depth, slot)}: a column per depth, a row per slot
    depth = max((len(n) for n in nodes), default=0)
    n_rows = max((y for _, y in pos.values()), default=0) + 1
    width = PAD * 2 + (depth + 1) * BOX_W + depth * GAP_X
    height = PAD * 2 + n_rows * ROW_H

    def corner(node):
        x, y = pos[node]
        return PAD + x * (BOX_W + GAP_X), PAD + y * ROW_H + (ROW_H - BOX_H) / 2

    def edge(node):
        (px, py), (cx, cy) = corner(node[:-1]), corner(node)
        x1, y1, x2, y2 = px + BOX_W, py + BOX_H / 2, cx, cy + BOX_H / 2
        m = (x1 + x2) / 2
        return f"M{x1:.0f},{y1:.1f} C{m:.0f},{y1:.1f} {m:.0f},{y2:.1f} {x2:.0f},{y2:.1f}"

    out = [f'<svg class="tree" width="{width}" height="{height}" viewBox="0 0 {width} {height}">']
    # Gold halos under the edges of solved runs, then the edges, then the boxes on top.
    for node in sorted(tree["on_solved"]):
        out.append(f'<path class="halo" data-label="{run_key(node)}" d="{edge(node)}"/>')
    for node in sorted(nodes):
        n = nodes[node]
        cls = " ".join(["edge", *sorted(n["roles"])] + (["sel"] if n["selected"] else []))
        out.append(f'<path class="{cls}" data-label="{run_key(node)}" d="{edge(node)}"/>')
    x, y = corner(())
    out.append(f'<g class="root" data-label="" transform="translate({x:.0f},{y:.1f})">'
               f'<rect width="{BOX_W}" height="{BOX_H}" rx="6"/>'
               f'<text x="10" y="14" class="lbl">task {html.escape(str(tree["index"]))}</text>'
               f'<text x="10" y="28" class="st">{tree["rollouts"]} runs, '
               f'{len(tree["solved"])} solved</text></g>')
    for node in sorted(nodes):
        n = nodes[node]
        x, y = corner(node)
        label = run_key(node)
        shown = label if len(label) <= MAX_LABEL else "…" + label[-(MAX_LABEL - 1):]
        cls = ["node", *sorted(n["roles"])] + (["sel"] if n["selected"] else [])
        if n["outcome"] is not None:
            cls.append("solved" if n["outcome"] else "failed")
        if node in tree["on_solved"]:
            cls.append("onsolved")
        mark = {1: '<text x="%d" y="14" class="mark ok">✓</text>' % (BOX_W - 16),
                0: '<text x="%d" y="14" class="mark no">✗</text>' % (BOX_W - 16)}.get(n["outcome"], "")
        out.append(
            f'<g class="{" ".join(cls)}" data-label="{label}" transform="translate({x:.0f},{y:.1f})">'
            f'<title>{label}</title>'
            f'<rect width="{BOX_W}" height="{BOX_H}" rx="6" fill="{_fill(n["value"])}"/>'
            f'<text x="8" y="14" class="lbl">{html.escape(shown)}</text>{mark}'
            f'<text x="8" y="28" class="st">t={_temp(n["temp"])} '
            f'v={_fmt(n["value"], ".2f")} n={n["visits"]}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _json_script(obj, cls) -> str:
    # '<' escaped so that model text such as "</script>" cannot end the element early.
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return f'<script type="application/json" class="{cls}">{text}</script>'


def node_data(tree) -> dict:
    """What a click shows, per node label ('' = the root: the task itself)."""
    data = {"": {"goal": tree["input"], "target": tree["target"], "score": tree["score"]}}
    for node, n in tree["nodes"].items():
        data[run_key(node)] = {k: n[k] for k in ("value", "visits", "avg_depth", "temp", "action", "obs",
                                             "outcome", "end_reason", "finish", "tokens", "runs",
                                             "solved_runs", "pairs")}
    return data


def task_section(tree, open_=True) -> str:
    i = html.escape(str(tree["index"]))
    solved = tree["solved"]
    head = (f'task {i} · score {_fmt(tree["score"], "g")} · {tree["rollouts"]} runs, '
            f'{len(solved)} solved · {len(tree["nodes"])} nodes · {tree["pairs"]} pairs, '
            f'{tree["selected"]} selected')
    if tree["rounds"] is not None:
        head += f' · {tree["rounds"]} rounds'
    chips = "".join(f'<button class="run" data-label="{run_key(r)}">{run_key(r)}</button>'
                    for r in solved[:MAX_CHIPS])
    if len(solved) > MAX_CHIPS:
        chips += f' <span class="muted">and {len(solved) - MAX_CHIPS} more</span>'
    body = [f'<p class="goal">{html.escape(str(tree["input"] or ""))}</p>',
            f'<p class="muted">target: {html.escape(str(tree["target"] or ""))}'
            + (f' · {tree["dropped"]} identical-action pairs dropped' if tree["dropped"] else "")
            + '</p>',
            f'<div class="runs">solved runs: {chips or "<span class=muted>none</span>"}</div>']
    if tree["nodes"]:
        body.append(f'<div class="svgwrap">{tree_svg(tree)}</div>')
    else:
        body.append('<p class="muted">no rollouts recorded</p>')
    body.append(_json_script(node_data(tree), "nodedata"))
    return (f'<section class="task" id="task-{i}" data-index="{i}"><details{" open" if open_ else ""}>'
            f'<summary>{head}</summary>{"".join(body)}</details></section>')


def task_table(trees) -> str:
    rows = "".join(
        f'<tr><td><a href="#task-{html.escape(str(t["index"]))}">{html.escape(str(t["index"]))}</a></td>'
        f'<td>{_fmt(t["score"], "g")}</td><td>{t["rollouts"]}</td><td>{len(t["solved"])}</td>'
        f'<td>{len(t["nodes"])}</td><td>{t["pairs"]}</td><td>{t["selected"]}</td>'
        f'<td class="goalcell">{html.escape(str(t["input"] or "")[:120])}</td></tr>' for t in trees)
    return ('<table class="tasks"><thead><tr><th>task</th><th>score</th><th>runs</th><th>solved</th>'
            '<th>nodes</th><th>pairs</th><th>selected</th><th>goal</th></tr></thead>'
            f'<tbody>{rows}</tbody></table>')


def _swatch(cls):
    return f'<svg width="34" height="12"><path class="{cls}" d="M4,6 H30"/></svg>'


LEGEND = (
    '<div class="legend">'
    f'<span>{_swatch("edge chosen sel")} chosen (selected pair)</span>'
    f'<span>{_swatch("edge rejected sel")} rejected (selected pair)</span>'
    f'<span>{_swatch("edge chosen")}{_swatch("edge rejected")} unselected pair</span>'
    f'<span>{_swatch("edge chosen rejected sel")} chosen and rejected</span>'
    f'<span>{_swatch("halo")} solved run</span>'
    '<span>box: run-index label, t = temperature, v = value, n = visits; '
    'colour red→green by value; ✓/✗ where a run ended</span></div>')

CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:#1d2330;background:#f6f7f9}
header{padding:12px 20px;background:#fff;border-bottom:1px solid #dde1e7}
h1{font-size:17px;margin:0 0 4px}
main{display:grid;grid-template-columns:minmax(0,1fr) minmax(340px,36%);align-items:start}
#trees{padding:12px 20px;min-width:0}
#panel{position:sticky;top:0;height:100vh;overflow:auto;background:#fff;
  border-left:1px solid #dde1e7;padding:14px 18px}
.muted{color:#6b7280}
section.task{background:#fff;border:1px solid #dde1e7;border-radius:8px;margin:0 0 14px;padding:6px 14px}
summary{cursor:pointer;font-weight:600;padding:6px 0}
.goal{max-height:7.5em;overflow:auto;white-space:pre-wrap;margin:6px 0}
.runs{max-height:5.2em;overflow:auto;margin:6px 0 8px}
.svgwrap{overflow:auto;max-height:80vh;border-top:1px solid #eef0f3;padding-top:6px}
svg.tree text{font:11px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;fill:#1d2330}
svg.tree .lbl{font-weight:700}
g.node,g.root{cursor:pointer}
g.node rect{stroke:#9aa3af;stroke-width:1}
g.node.solved rect{stroke:#d99a00;stroke-width:3}
g.node:hover rect,g.root:hover rect{stroke:#2563eb}
g.active rect{stroke:#2563eb !important;stroke-width:3 !important}
g.root rect{fill:#e8ecf3;stroke:#6b7280}
.mark{font-size:13px !important;font-weight:700}
.mark.ok{fill:#b07800 !important}.mark.no{fill:#b91c1c !important}
path.edge{fill:none;stroke:#b6bcc6;stroke-width:1.5}
path.edge.chosen{stroke:#5fae6b}
path.edge.rejected{stroke:#e08a80;stroke-dasharray:6 4}
path.edge.sel{stroke-width:4}
path.edge.chosen.sel{stroke:#1f8a3a}
path.edge.rejected.sel{stroke:#c62828}
path.edge.chosen.rejected{stroke:#7c3aed;stroke-dasharray:none}
path.halo{fill:none;stroke:#f7c948;stroke-width:11;stroke-linecap:round;opacity:.6}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:12px;color:#4b5563;margin-top:6px}
.legend svg{vertical-align:middle}
button.run{font:12px ui-monospace,Menlo,Consolas,monospace;background:#fff6d6;
  border:1px solid #e3b53b;border-radius:4px;padding:1px 6px;margin:1px 2px;cursor:pointer}
table.tasks{border-collapse:collapse;background:#fff;margin:0 0 14px;font-size:13px;width:100%}
table.tasks th,table.tasks td{border:1px solid #dde1e7;padding:3px 8px;text-align:right}
table.tasks td.goalcell,table.tasks th:last-child{text-align:left;color:#4b5563}
#panel h2{font:700 15px ui-monospace,Menlo,Consolas,monospace;margin:0 0 6px;word-break:break-all}
#panel h3{font-size:13px;margin:14px 0 4px;color:#374151}
#panel pre{white-space:pre-wrap;word-break:break-word;background:#f3f4f6;border:1px solid #e5e7eb;
  border-radius:6px;padding:8px 10px;margin:0;font:12px/1.45 ui-monospace,Menlo,Consolas,monospace;
  max-height:45vh;overflow:auto}
#panel .kv{font-size:13px}#panel .kv b{font-weight:600}
.tag{display:inline-block;border-radius:4px;padding:0 6px;font-size:12px;margin-right:4px}
.tag.ok{background:#fff1c2;color:#7a5500}.tag.no{background:#fde2e1;color:#991b1b}
.tag.inner{background:#e5e7eb}
#panel ul{margin:4px 0;padding-left:18px;font-size:13px}
#panel a{color:#2563eb;cursor:pointer}
"""

# Text from the model is only ever set with textContent, never parsed as HTML.
JS = r"""
const cache = new WeakMap();
function dataOf(sec){
  if(!cache.has(sec)) cache.set(sec, JSON.parse(sec.querySelector('script.nodedata').textContent));
  return cache.get(sec);
}
function el(tag, text, cls){
  const e = document.createElement(tag);
  if(text !== undefined && text !== null) e.textContent = text;
  if(cls) e.className = cls;
  return e;
}
function fmtT(x){ return (typeof x==='number') ? (Number.isInteger(x) ? x.toFixed(1) : String(x)) : '?'; }
function fmt(x, d){ return (typeof x==='number') ? (d===undefined ? String(x) : x.toFixed(d)) : '?'; }
function reveal(sec, g){
  // Centre the node inside its tree's scroll box; move the page only if the task is off screen.
  sec.querySelector('details').open = true;
  const w = sec.querySelector('.svgwrap'), wb = w.getBoundingClientRect(), gb = g.getBoundingClientRect();
  w.scrollTop += gb.top - wb.top - (w.clientHeight - gb.height) / 2;
  w.scrollLeft += gb.left - wb.left - (w.clientWidth - gb.width) / 2;
  const sb = sec.getBoundingClientRect();
  if(sb.top > innerHeight || sb.bottom < 0) sec.scrollIntoView();
}
function show(sec, label, scroll){
  const d = dataOf(sec)[label], p = document.getElementById('panel');
  if(!d) return;
  document.querySelectorAll('g.active').forEach(g=>g.classList.remove('active'));
  const g = sec.querySelector(label ? `g.node[data-label="${CSS.escape(label)}"]` : 'g.root');
  if(g){ g.classList.add('active'); if(scroll) reveal(sec, g); }
  p.replaceChildren();
  const idx = sec.dataset.index;
  if(label===''){
    p.append(el('h2', 'task '+idx), el('h3','goal'), el('pre', d.goal, 'goal-text'),
             el('h3','target'), el('pre', d.target), el('p', 'score '+fmt(d.score), 'kv'));
    return;
  }
  p.append(el('h2', label));
  const tags = el('p');
  if(d.outcome===1) tags.append(el('span','solved run ends here','tag ok'));
  else if(d.outcome===0) tags.append(el('span','failed run ends here','tag no'));
  else tags.append(el('span','inner node','tag inner'));
  tags.append(el('span', 'task '+idx, 'muted'));
  p.append(tags);
  p.append(el('p', `temperature ${fmtT(d.temp)} · value ${fmt(d.value,3)} · visits ${d.visits}` +
              ` · avg depth below ${fmt(d.avg_depth,2)}`, 'kv'));
  p.append(el('p', `runs through here: ${d.runs}, solved ${d.solved_runs}` +
              (d.end_reason ? ` · ended: ${d.end_reason}` : '') +
              (d.finish ? ` · finish: ${d.finish}` : '') +
              (d.tokens!=null ? `, ${d.tokens} tokens` : ''), 'kv muted'));
  if(d.pairs.length){
    p.append(el('h3', 'pairs'));
    const ul = el('ul');
    for(const [role, other, dv, sel] of d.pairs){
      const li = el('li', `${role} against `); const a = el('a', other); a.onclick=()=>show(sec, other, true);
      li.append(a, ` (Δvalue ${fmt(dv,2)}${sel ? ', selected' : ', not selected'})`);
      li.className = role + (sel ? ' sel' : ''); ul.append(li);
    }
    p.append(ul);
  }
  p.append(el('h3','action'), el('pre', d.action, 'action-text'));
  p.append(el('h3','observation'),
           el('pre', d.obs===null ? '(none: the episode ended at this action)' : d.obs, 'obs-text'));
}
document.addEventListener('click', e=>{
  const t = e.target.closest('g.node, g.root, button.run');
  if(!t) return;
  const sec = t.closest('section.task');
  show(sec, t.dataset.label, t.tagName==='BUTTON');
  try { history.replaceState(null, '', '#' + sec.id + '/' + t.dataset.label); } catch(_) {}
});
// '#task-3' opens task 3, '#task-3/0,1' also shows node 0,1: a link (or a screenshot) can
// point at a node. Clicking a node puts its address in the URL.
function openHash(){
  const m = decodeURIComponent(location.hash.slice(1)).match(/^(task-[^\/]*)(?:\/(.*))?$/);
  const s = m && document.getElementById(m[1]);
  if(!s) return;
  s.querySelector('details').open = true;
  if(m[2] !== undefined) show(s, m[2], true);
}
window.addEventListener('hashchange', openHash);
// A wide tree puts its root halfway down: start each tree's view there, not on empty space.
function centerRoot(sec){
  const w = sec.querySelector('.svgwrap'), r = sec.querySelector('g.root');
  if(!w || !r || w.dataset.centered) return;
  w.dataset.centered = '1';
  const wb = w.getBoundingClientRect(), rb = r.getBoundingClientRect();
  w.scrollTop += rb.top - wb.top - (w.clientHeight - rb.height) / 2;
}
document.querySelectorAll('section.task details').forEach(d=>{
  d.addEventListener('toggle', ()=>{ if(d.open) centerRoot(d.parentElement); });
  if(d.open) centerRoot(d.parentElement);
});
openHash();
"""


# ------------------------------------------------------------------------------------ the page
def load_trees(path, index=None, thre_value=THRE_VALUE, thre_max=THRE_MAX, max_length=MAX_LENGTH) -> list:
    """Trees of every row of a result file (or of the row with task `index`). ViewerError, one
    line naming file and row, on anything that cannot be drawn."""
    trees, seen = [], 0
    try:
        for i, row in iter_results(path):  # streaming: one row in memory, plus the trees drawn
            seen += 1
            if index is not None and str(row.get("index")) != str(index):
                continue
            try:
                trees.append(task_tree(row, thre_value, thre_max, max_length))
            except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
                raise ViewerError(f"{path}: row {i} (index {row.get('index')!r}): {e}") from None
    except ResultFileError as e:
        raise ViewerError(str(e)) from None
    if not trees:
        raise ViewerError(f"{path}: no task with index {index} ({seen} rows)" if index is not None
                          else f"{path}: no rows")
    return trees


def page(trees, title) -> str:
    one = len(trees) == 1
    n_solved = sum(1 for t in trees if t["solved"])
    summary = (f'{len(trees)} task{"s" * (not one)}, {n_solved} solved at least once, '
               f'{sum(t["rollouts"] for t in trees)} runs, {sum(t["pairs"] for t in trees)} pairs, '
               f'{sum(t["selected"] for t in trees)} selected. Click a box for its action and '
               f'observation.')
    parts = [] if one else [task_table(trees)]
    parts += [task_section(t, open_=one) for t in trees]
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{html.escape(title)}</title><style>{CSS}</style></head><body>'
            f'<header><h1>{html.escape(title)}</h1><div class="muted">{summary}</div>{LEGEND}</header>'
            f'<main><div id="trees">{"".join(parts)}</div>'
            '<aside id="panel"><p class="muted">Click a node to see its action and observation, '
            'the task box for the goal, a gold run label to jump to that run.</p></aside></main>'
            f'<script>{JS}</script></body></html>\n')


def default_out(path, index=None) -> Path:
    path = Path(path)
    stem = path.name.removesuffix(".csv")
    return path.with_name(f"{stem}.tree{'' if index is None else '_' + str(index)}.html")


def render(path, out=None, index=None, thre_value=THRE_VALUE, thre_max=THRE_MAX,
           max_length=MAX_LENGTH) -> Path:
    """Write the page for `path` (all tasks, or task `index`) to `out`; returns the path written."""
    trees = load_trees(path, index, thre_value, thre_max, max_length)
    out = Path(out) if out else default_out(path, index)
    title = Path(path).name + ("" if index is None else f" · task {index}")
    with AtomicFile(out) as w:
        w.write(page(trees, title))
    return out
