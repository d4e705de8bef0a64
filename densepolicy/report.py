"""Base against trained on the same held-out episodes: accuracies with 95% intervals, paired tests,
and the pair counts that explain the result; written as a table and as `summary.json`.

    python -m densepolicy.report --dataset babyai_GoToRedBallGrey --pairs PAIRS_FILE \
        --greedy BASE_RUN_DIR TRAINED_RUN_DIR --sampled BASE_RUN_DIR TRAINED_RUN_DIR \
        --out eval_results/demo/summary.json [--seconds 812]

Greedy: one episode per task, exact McNemar test on the tasks. Sampled: K episodes per task at a
temperature; accuracy over all episodes, intervals over episodes, and a paired bootstrap over
tasks (a task's episodes are not independent). A run directory is the launcher's result
directory of the plain agent (`eval_results/codeact_agent.<model>/<run>`).
"""
import argparse
import collections
import json
import sys

from densepolicy.results import AtomicFile, ResultFileError, finished_rows, iter_results, save_figure
from densepolicy.stats import compare, paired_bootstrap_p, wilson_interval


def greedy_outcomes(run_dir, dataset) -> dict:
    return {i: float(r["score"]) > 0 for i, r in finished_rows(run_dir, dataset).items()}


def sampled_outcomes(run_dir, dataset) -> dict:
    """{task index: [solved, ...]} of a sampled run."""
    return {i: [s > 0 for s in (r.get("sample_scores") or [float(r["score"])])]
            for i, r in finished_rows(run_dir, dataset).items()}


def pair_counts(pairs_file) -> dict:
    """pairs, selected, selected pairs whose rejected side is the greedy action (label 0: the only
    kind that can flip a greedy choice), and the selected pairs per contrast step."""
    counts = collections.Counter()
    steps = collections.Counter()
    for _, row in iter_results(pairs_file):
        counts["pairs"] += 1
        if row["selected"]:
            counts["selected"] += 1
            counts["selected_greedy_rejected"] += row["negative_run_index"][-1] == 0
            steps[row["contrast_step"]] += 1
    return {"pairs": counts["pairs"], "selected": counts["selected"],
            "selected_greedy_rejected": counts["selected_greedy_rejected"],
            "selected_contrast_steps": {str(k): v for k, v in sorted(steps.items())}}


def greedy_summary(base_dir, trained_dir, dataset) -> dict:
    return compare(greedy_outcomes(base_dir, dataset), greedy_outcomes(trained_dir, dataset)).as_dict()


def sampled_summary(base_dir, trained_dir, dataset) -> dict:
    return sampled_comparison(sampled_outcomes(base_dir, dataset), sampled_outcomes(trained_dir, dataset))


def sampled_comparison(base: dict, trained: dict) -> dict:
    """Accuracy over episodes, Wilson intervals, paired bootstrap over the shared tasks."""
    tasks = sorted(set(base) & set(trained))
    if not tasks:
        raise ValueError("the two models share no task")
    b = [x for t in tasks for x in base[t]]
    t_ = [x for t in tasks for x in trained[t]]
    share = lambda outcomes: {t: sum(outcomes[t]) / len(outcomes[t]) for t in tasks}  # noqa: E731
    return {"tasks": len(tasks), "episodes": len(b), "base_acc": sum(b) / len(b), "trained_acc": sum(t_) / len(t_),
            "base_ci": list(wilson_interval(sum(b), len(b))), "trained_ci": list(wilson_interval(sum(t_), len(t_))),
            "p_value": paired_bootstrap_p(share(base), share(trained))}


def train_loss(path) -> float:
    try:
        return float(json.loads(open(path, encoding="utf-8").read())["train_loss"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not LLaMA-Factory's train_results.json (no train_loss: {e})") from None


def compare_runs(base_dir, trained_dir, dataset) -> dict:
    """The paired comparison that fits the runs: McNemar for one episode per task, the paired
    bootstrap over tasks for several (the density study evaluates either way)."""
    base, trained = sampled_outcomes(base_dir, dataset), sampled_outcomes(trained_dir, dataset)
    if {len(v) for d in (base, trained) for v in d.values()} == {1}:
        return compare({t: v[0] for t, v in base.items()}, {t: v[0] for t, v in trained.items()}).as_dict()
    return sampled_comparison(base, trained)


def summarize(dataset, pairs, greedy=None, sampled=None, seconds=None, train_results=None, extra=None) -> dict:
    """The summary.json of a base/trained comparison: pair counts, then `greedy` and `sampled`
    ((base run dir, trained run dir) each, or None), episodes, seconds, train_loss, `extra`.
    ResultFileError, ValueError or OSError (one line) when a file is missing or not what it should be."""
    summary = {**pair_counts(pairs)}
    if greedy:
        summary["greedy"] = greedy_summary(*greedy, dataset)
    if sampled:
        summary["sampled"] = sampled_summary(*sampled, dataset)
    summary["episodes"] = summary.get("greedy", summary.get("sampled", {})).get("episodes", 0)
    summary["seconds"] = seconds
    if train_results:
        summary["train_loss"] = train_loss(train_results)
    summary.update(extra or {})
    return summary


def table(summary: dict) -> str:
    def pct(x):
        return f"{100 * x:.1f}%"

    def ci(c):
        return f"[{100 * c[0]:.1f}, {100 * c[1]:.1f}]"

    lines = ["| measure | episodes | base | 95% CI | trained | 95% CI | p (paired) |",
             "|---|---|---|---|---|---|---|"]
    for name, test in (("greedy", "McNemar"), ("sampled", "bootstrap")):
        s = summary.get(name)
        if s:
            lines.append(f"| {name} | {s['episodes']} | {pct(s['base_acc'])} | {ci(s['base_ci'])} | "
                         f"{pct(s['trained_acc'])} | {ci(s['trained_ci'])} | {s['p_value']:.3g} ({test}) |")
    lines.append("")
    lines.append(f"pairs {summary['pairs']}, selected {summary['selected']}, selected with the greedy action "
                 f"rejected {summary['selected_greedy_rejected']}; selected pairs per contrast step "
                 f"{summary.get('selected_contrast_steps', {})}")
    return "\n".join(lines)


def plot(summary: dict, path) -> None:
    """Base against trained, one panel per measure: accuracy bars with their 95% intervals, the
    episodes and the paired p-value in each panel's title. Written under a temporary name, renamed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    measures = [m for m in ("greedy", "sampled") if summary.get(m)]
    fig, axes = plt.subplots(1, len(measures), figsize=(3.4 * len(measures) + 0.6, 3.8), squeeze=False)
    for ax, name in zip(axes[0], measures):
        s = summary[name]
        accs = [100 * s["base_acc"], 100 * s["trained_acc"]]
        # max(0, ...): an accuracy of 0 or 1 sits on its interval's end, give or take rounding.
        lows = [max(0.0, a - 100 * s[f"{side}_ci"][0]) for a, side in zip(accs, ("base", "trained"))]
        highs = [max(0.0, 100 * s[f"{side}_ci"][1] - a) for a, side in zip(accs, ("base", "trained"))]
        ax.bar(["base", "trained"], accs, yerr=[lows, highs], capsize=6, color=["#9aa5b1", "#2b7bba"])
        for x, a in enumerate(accs):
            ax.annotate(f"{a:.1f}%", (x, a), textcoords="offset points", xytext=(14, 2), fontsize=9)
        ax.set_title(f"{name}: {s['episodes']} episodes\npaired p = {s['p_value']:.2g}", fontsize=10)
        ax.set_ylim(0, 108)  # room for a label at 100%
        ax.set_yticks(range(0, 101, 20))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%, 95% CI)")
    fig.suptitle(f"{summary['selected']} selected pairs ({summary['selected_greedy_rejected']} with the "
                 f"greedy action rejected)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", required=True)
    p.add_argument("--pairs", required=True,
                   help="the pairs file the training pairs were selected from (every pair built, the selected "
                        "ones marked): `pairs` counts its rows, `selected` its selected ones")
    p.add_argument("--greedy", nargs=2, metavar=("BASE", "TRAINED"), help="greedy run directories")
    p.add_argument("--sampled", nargs=2, metavar=("BASE", "TRAINED"), help="sampled run directories")
    p.add_argument("--seconds", type=float, default=None, help="the job's wall time, recorded")
    p.add_argument("--train_results", help="LLaMA-Factory's train_results.json: its train_loss is recorded")
    p.add_argument("--extra", default="{}", help="JSON object merged into the summary (settings)")
    p.add_argument("--out", required=True, help="summary.json to write")
    p.add_argument("--figure", help="also draw base against trained (a PNG) here")
    args = p.parse_args(argv)
    try:
        summary = summarize(args.dataset, args.pairs, args.greedy, args.sampled, args.seconds,
                            args.train_results, json.loads(args.extra))
    except (ResultFileError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    with AtomicFile(args.out) as f:
        f.write(json.dumps(summary, indent=2) + "\n")
    if args.figure:
        plot(summary, args.figure)
    print(table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
