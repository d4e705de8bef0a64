"""The density study (issue 7): with the number of preference pairs fixed, is it better to spend
them on denser trees (more pairs per task, fewer tasks) or on more tasks?

Density (SPEC §8). For one dataset, P is the number of pairs in a training set (the same for
every density of the study), N the number of tasks they come from, P/N the trajectory density
(pairs per task). merge_all_pairs keeps the N tasks with most selected pairs and draws P of their
pairs uniformly (seeded), never upsampling. The densest set of P pairs comes from N_min tasks, the
fewest top tasks whose selected pairs add up to at least P; its density P/N_min is the largest one
these trees allow. A study density is given either as

  fraction (default)  r in (0, 1]: a fraction of that largest density, pairs per task r*P/N_min,
                      so N = round(N_min / r) (1.0: the densest set; 0.5: twice as many tasks,
                      half the pairs each; 0.125: eight times as many tasks)
  pairs_per_task      d: the pairs per task itself, so N = round(P / d) (needs N >= N_min)

and every N must be at most the number of tasks that have selected pairs. With total pairs
`auto`, P is the largest count for which every density of the study fits.

Stages (pipeline/stages.py, shared with the demo; each skipped when its output exists; every output
is written under a temporary name and renamed, so an interrupted study resumes where it stopped):

  per density   merge pairs    merge_all_pairs(n_tasks={ds: N}, n_pairs={ds: P}) -> OUT/<tag>/merged_pairs.csv
                dataset        prepare_dataset -> OUT/data/density_<tag>.json (+ OUT/data/dataset_info.json)
                train          llamafactory-cli train CONFIG ... -> OUT/<tag>/lora
                merge adapter  TreeDPO/merge_lora.py -> OUT/<tag>/model (LoRA only; a full run is the model)
                evaluate DS    distributed_test.sh MODEL DS codeact_agent (WAIT=1) -> OUT/<tag>/eval/...
  base model    evaluate DS    the same, once, -> OUT/base/eval/...
  report        OUT/density_results.csv, .md and density.png (accuracy against density)

OUT/study.json records the settings; a rerun with other settings stops with an error instead of
mixing outputs of two studies.
"""
import json
import math
import shlex
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from densepolicy import engines, pair_selection, paths
from densepolicy import pairs as pairs_lib
from densepolicy.merge import max_trial_accuracy
from densepolicy.models import resolve_model
from densepolicy.report import compare_runs
from densepolicy.results import AtomicFile, ResultFileError, iter_results, save_figure
from pipeline.stages import Stages, shown, train_loss, train_precision

ROOT = paths.ROOT
UNITS = ("fraction", "pairs_per_task")
RESULT_COLUMNS = ["dataset", "density", "pairs_per_task", "tasks_planned", "tasks", "pairs",
                  "train_records", "train_loss", "eval_tasks", "solved", "accuracy", "episodes",
                  "ci_low", "ci_high", "p_vs_base"]


class StudyError(ValueError):
    """Settings or inputs that cannot make a study (before any stage ran); one line."""


# --------------------------------------------------------------------------------- the plan
def parse_densities(text) -> list[float]:
    try:
        values = [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise StudyError(f"densities must be comma-separated numbers, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise StudyError(f"densities must be positive numbers, got {text!r}")
    if len(set(values)) != len(values):
        raise StudyError(f"densities repeat a value: {text!r}")
    return sorted(values)


def parse_total_pairs(text, datasets) -> dict:
    """'auto', 'P' (every dataset) or 'DS=P,DS2=P2' -> {dataset: P or None (auto)}."""
    text = str(text).strip()
    if text == "auto":
        return {ds: None for ds in datasets}
    if text.isdigit():
        return {ds: int(text) for ds in datasets}
    out = {ds: None for ds in datasets}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep or not (value.isdigit() or value == "auto") or name not in out:
            raise StudyError(f"total pairs must be 'auto', an integer or DATASET=INTEGER for the "
                             f"datasets {', '.join(datasets)}; got {item!r}")
        out[name] = None if value == "auto" else int(value)
    if any(v == 0 for v in out.values()):
        raise StudyError("total pairs must be positive")
    return out


def density_tag(value) -> str:
    return f"d{value:g}"


def min_tasks(counts, p) -> int:
    """Fewest tasks (counts sorted descending) whose pairs add up to at least p (0: none can)."""
    total = 0
    for k, c in enumerate(counts, start=1):
        total += c
        if total >= p:
            return k
    return 0


def tasks_for(density, unit, p, n_min) -> int:
    if unit == "fraction":
        return max(n_min, _round(n_min / density))
    return max(1, _round(p / density))


def _round(x) -> int:
    return int(math.floor(x + 0.5))  # halves up, not to even


def check_density(density, unit, p, counts) -> tuple[int, str | None]:
    """(N, None) when this density can be built from these trees with P pairs, else (N, why)."""
    n_min = min_tasks(counts, p)
    if n_min == 0:
        return 0, f"its tasks hold {sum(counts)} selected pairs, fewer than {p}"
    if unit == "fraction" and density > 1:
        return 0, f"a fraction density must be at most 1, got {density:g}"
    n = tasks_for(density, unit, p, n_min)
    if unit == "pairs_per_task" and n < n_min:
        return n, (f"{p} pairs at {density:g} per task would come from {n} tasks, but the "
                   f"{n} tasks with most pairs hold only {sum(counts[:n])}")
    if n > len(counts):
        return n, (f"{p} pairs at density {density:g} need {n} tasks, but only {len(counts)} "
                   f"tasks have selected pairs")
    return n, None


def auto_total_pairs(counts, densities, unit) -> int:
    """The largest P for which every density fits (0 when none does)."""
    cum, total = [], 0
    for c in counts:
        total += c
        cum.append(total)
    if not cum:
        return 0
    if unit == "fraction":
        # N(r_min) = round(N_min / r_min) <= T  <=>  N_min <= k_max; P = pairs of the top k_max.
        k = len(counts)
        while k > 0 and _round(k / min(densities)) > len(counts):
            k -= 1
        candidates = range(cum[k - 1], 0, -1) if k else range(0)
    else:
        candidates = range(min(total, int((len(counts) + 0.5) * min(densities))), 0, -1)
    for p in candidates:
        if all(check_density(d, unit, p, counts)[1] is None for d in densities):
            return p
    return 0


def task_pair_counts(pair_files) -> dict[str, list[int]]:
    """{dataset: selected pairs per task, descending} over these pair files."""
    # merge_all_pairs' own counting (densepolicy.pair_selection), so that plan and merge agree.
    return {ds: sorted((c for c in per.values() if c > 0), reverse=True)
            for ds, per in pair_selection.selected_counts(pair_files).items()}


@dataclass
class DensityPlan:
    density: float
    tag: str
    tasks: dict          # dataset -> N
    pairs: dict          # dataset -> P

    @property
    def label(self):
        return f"density {self.density:g}"


def make_plan(counts, datasets, densities, unit, total_pairs) -> tuple[dict, list[DensityPlan]]:
    """({dataset: P}, one DensityPlan per density); StudyError naming dataset and density when
    the trees cannot give one."""
    if unit not in UNITS:
        raise StudyError(f"density unit must be one of {', '.join(UNITS)}, got {unit!r}")
    resolved = {}
    for ds in datasets:
        c = counts.get(ds) or []
        if not c:
            raise StudyError(f"dataset {ds}: no selected pairs in its pair files")
        p = total_pairs.get(ds)
        if p is None:
            p = auto_total_pairs(c, densities, unit)
            if p == 0:
                raise StudyError(f"dataset {ds}: no pair count fits every density "
                                 f"({', '.join(f'{d:g}' for d in densities)}) with its {len(c)} "
                                 f"tasks; drop the smallest density or sample more trees")
        resolved[ds] = p
    plans = []
    for d in densities:
        tasks = {}
        for ds in datasets:
            n, why = check_density(d, unit, resolved[ds], counts[ds])
            if why:
                raise StudyError(f"density {d:g}, dataset {ds}: {why}; lower --total_pairs or "
                                 f"drop that density")
            tasks[ds] = n
        plans.append(DensityPlan(d, density_tag(d), tasks, dict(resolved)))
    return resolved, plans


# ------------------------------------------------------------------------------- the study
@dataclass
class Study:
    datasets: list
    densities: list
    out: Path
    pair_files: list
    unit: str = "fraction"
    total_pairs: dict = field(default_factory=dict)   # dataset -> P or None (auto)
    model: str = "SmolLM2-135M-Instruct"
    treedpo_config: str = "TreeDPO/smollm2_lora_dpo_cpu.yaml"
    treedpo_venv: str = ".venv-treedpo"
    train_args: str = ""
    cutoff_len: int = 4096
    eval_tasks: int | None = None
    eval_args: str = ""
    eval_procs: int = 1
    seed: int = 0
    start_id: int = 950
    port_base: int = 8450
    num_gpus: str | None = None
    verbose: bool = False
    log: object = print

    # ----------------------------------------------------------------------- plumbing
    def __post_init__(self):
        self.out = Path(self.out).resolve()
        self.data_dir = self.out / "data"
        self.logs = self.out / "logs"
        # Each evaluation starts its own server (one model each); its launcher logs stay in the study.
        self.stages = Stages(logs=self.logs, log=self.log, verbose=self.verbose,
                             seconds_file=self.logs / "stage_seconds.tsv", start_id=self.start_id,
                             port_base=self.port_base, num_gpus=self.num_gpus,
                             launcher_logs=str(self.logs / "launcher"))

    # ----------------------------------------------------------------------- settings
    def resolve(self):
        """Plan the study and check it against OUT/study.json. Returns the plans."""
        self.pair_files = [Path(f).resolve() for f in self.pair_files]
        mine = [f for f in self.pair_files if pairs_lib.dataset_of(f) in self.datasets]
        missing = [ds for ds in self.datasets if not any(pairs_lib.dataset_of(f) == ds for f in mine)]
        if missing:
            raise StudyError(f"no pair files (*{pairs_lib.PAIRS_SUFFIX}) for {', '.join(missing)}: sample "
                             f"trees and run post_process_training_data.py --process_result "
                             f"first (see demo.sh), or pass --pair_files")
        self.pair_files = mine
        try:
            counts = task_pair_counts(mine)
        except (pairs_lib.PairsError, ResultFileError) as e:
            raise StudyError(str(e)) from None
        self.resolved_pairs, self.plans = make_plan(counts, self.datasets, self.densities,
                                                    self.unit, self.total_pairs)
        cfg = Path(self.treedpo_config)
        if not cfg.is_absolute():  # commands run from the repository root
            cfg = Path.cwd() / cfg if (Path.cwd() / cfg).is_file() else ROOT / cfg
        if not cfg.is_file():
            raise StudyError(f"TreeDPO config {self.treedpo_config}: no such file")
        self.config_path = cfg.resolve()
        if Path(self.model).exists():  # a local model directory, named from anywhere
            self.model = str(Path(self.model).resolve())
        settings = self.settings()
        stamp = self.out / "study.json"
        if stamp.exists():
            try:
                old = json.loads(stamp.read_text(encoding="utf-8"))
            except json.JSONDecodeError:
                old = {}
            differ = [k for k in settings if old.get(k) != settings[k]]
            if differ:
                raise StudyError(
                    f"{stamp} holds a study made with other settings ({', '.join(differ)}); "
                    f"finish it with its own settings or give another --out")
        else:
            with AtomicFile(stamp) as w:
                w.write(json.dumps(settings, indent=2) + "\n")
        return self.plans

    def settings(self):
        """What the cached outputs depend on (densities excepted: adding one is fine)."""
        return {"datasets": self.datasets, "unit": self.unit, "total_pairs": self.resolved_pairs,
                "seed": self.seed, "pair_files": [[str(f), f.stat().st_size] for f in self.pair_files],
                "model": self.model, "treedpo_config": self.treedpo_config,
                "train_args": self.train_args, "cutoff_len": self.cutoff_len,
                "eval_tasks": self.eval_tasks, "eval_args": self.eval_args, "server": self.server(),
                "train_precision": " ".join(self.precision()) or "as configured"}

    def server(self) -> str:
        """The engine the evaluations will be served by, as the launcher itself resolves it (its
        ENGINE and its GPU count), named by engines.identity."""
        config = self.launcher_config
        return engines.identity(config.engine, config.num_gpus)

    @cached_property
    def launcher_config(self):
        """The launcher's resolved settings for this study's model (engine, GPU count), once: the
        settings check, the engine identity and every training's precision read them."""
        return self.stages.configure("serve", None, ["serve", self.model, self.start_id])

    def precision(self) -> list[str]:
        """What the training adds to TRAIN_ARGS on this machine (stages.train_precision)."""
        return train_precision(self.launcher_config.num_gpus, shlex.split(self.train_args))

    # ------------------------------------------------------------------------- stages
    # The shared stages (pipeline/stages.py) with the study's names, labels and paths.
    def merge_pairs(self, plan: DensityPlan) -> Path:
        return self.stages.merge_pairs(
            "merge pairs", plan.label, self.pair_files, self.out / plan.tag / "merged_pairs.csv",
            n_tasks=plan.tasks, n_pairs=plan.pairs, seed=self.seed, what=", ".join(
                f"{ds}: {plan.pairs[ds]} pairs from the top {plan.tasks[ds]} tasks" for ds in self.datasets))

    def dataset(self, plan: DensityPlan, merged: Path, model_path: str) -> str:
        name = f"density_{plan.tag}"
        self.stages.dataset(plan.label, merged, self.data_dir, name, model_path, self.cutoff_len,
                            self.out / plan.tag / "train_set.json")
        return name

    def train(self, plan: DensityPlan, name: str, model_path: str) -> Path:
        return self.stages.train(plan.label, self.config_path, self.treedpo_venv, model_path, name,
                                 self.data_dir, self.out / plan.tag / "lora",
                                 [*self.precision(), *shlex.split(self.train_args)])

    def merge_adapter(self, plan: DensityPlan, trained: Path, model_path: str) -> Path:
        return self.stages.merge_adapter(plan.label, trained, model_path, self.out / plan.tag / "model",
                                         self.treedpo_venv)

    def evaluate(self, label, model, dataset, eval_root) -> dict:
        """The plain agent on the first eval_tasks test tasks (with the launcher's per-dataset
        defaults, then eval_args); rows already there are kept."""
        done = self.stages.run_agents(
            f"evaluate {dataset}", label, model, dataset, "codeact_agent",
            f"{self.eval_args} --output_root {shlex.quote(str(eval_root))}", task_limit=self.eval_tasks,
            procs=self.eval_procs)
        acc = max_trial_accuracy(done.rows, (done.max_turn,))[done.max_turn]
        solved = sum(float(r["score"]) > 0 and (not isinstance(r.get("turns"), int) or r["turns"] <= done.max_turn)
                     for r in done.rows)
        return {"eval_tasks": len(done.rows), "solved": solved, "accuracy": acc, "run_dir": done.directory}

    # -------------------------------------------------------------------------- report
    def set_stats(self, plan: DensityPlan, merged: Path) -> dict:
        """{dataset: (pairs, tasks)} of a merged training set."""
        pairs, tasks = {}, {}
        for _, row in iter_results(merged, raw=True):
            ds = row["dataset"]
            pairs[ds] = pairs.get(ds, 0) + 1
            tasks.setdefault(ds, set()).add((row["source"], row["data_id"]))
        return {ds: (pairs.get(ds, 0), len(tasks.get(ds, ()))) for ds in self.datasets}

    def report(self, rows):
        csv_path, md_path = self.out / "density_results.csv", self.out / "density_results.md"
        png = self.out / "density.png"
        csv_text = table_csv(rows)
        md_text = table_md(rows, self)
        if (png.exists() and csv_path.exists() and md_path.exists()
                and csv_path.read_text(encoding="utf-8") == csv_text
                and md_path.read_text(encoding="utf-8") == md_text):
            self.stages.line("report", "all", f"skipped, {shown(csv_path)} is up to date")
        else:
            self.stages.line("report", "all", f"{shown(csv_path)}, {shown(md_path)}, {shown(png)}")
            plot(rows, png, self)
            for path, text in ((csv_path, csv_text), (md_path, md_text)):
                with AtomicFile(path) as w:
                    w.write(text)
        self.log("")
        self.log(md_text.rstrip())
        return csv_path, md_path, png

    # ----------------------------------------------------------------------------- run
    def run(self):
        plans = self.resolve()
        self.log(f"== density study in {shown(self.out)}: "
                 + "; ".join(f"{ds}: {p} pairs per training set, tasks "
                             + ", ".join(f"{pl.tasks[ds]} (density {pl.density:g})" for pl in plans)
                             for ds, p in self.resolved_pairs.items()))
        for ds in self.datasets:
            densities_by_tasks = {}
            for pl in plans:
                densities_by_tasks.setdefault(pl.tasks[ds], []).append(f"{pl.density:g}")
            for n, densities in densities_by_tasks.items():
                if len(densities) > 1:
                    self.log(f"   warning: {ds}: densities {', '.join(densities)} all come to {n} tasks "
                             f"(too few tasks with pairs to tell them apart)")
        model_path = resolve_model(self.model)
        rows = []
        for plan in plans:
            merged = self.merge_pairs(plan)
            name = self.dataset(plan, merged, model_path)
            trained = self.train(plan, name, model_path)
            model = self.merge_adapter(plan, trained, model_path)
            stats = self.set_stats(plan, merged)
            records = json.loads((self.out / plan.tag / "train_set.json").read_text())["records"]
            loss = train_loss(trained)
            for ds in self.datasets:
                res = self.evaluate(plan.label, str(model), ds, self.out / plan.tag / "eval")
                pairs, tasks = stats[ds]
                rows.append({"dataset": ds, "density": plan.density, "tasks_planned": plan.tasks[ds],
                             "tasks": tasks, "pairs": pairs, "pairs_per_task": pairs / max(tasks, 1),
                             "train_records": records, "train_loss": loss, **res})
        for ds in self.datasets:  # last: a failing training stage shows before a long evaluation
            res = self.evaluate("base", self.model, ds, self.out / "base" / "eval")
            rows.append({"dataset": ds, "density": "base", **res})
        rows.sort(key=lambda r: (self.datasets.index(r["dataset"]),
                                 -1 if r["density"] == "base" else r["density"]))
        add_intervals(rows)
        return rows, self.report(rows)


def add_intervals(rows):
    """Each row's 95% interval over its episodes and, for a trained model, the paired test against
    the base model on the same test tasks (McNemar greedy, paired bootstrap sampled; report.py)."""
    base = {r["dataset"]: r for r in rows if r["density"] == "base"}
    for r in rows:
        b = base.get(r["dataset"])
        if b is None:
            continue
        c = compare_runs(b["run_dir"], r["run_dir"], r["dataset"])
        r["episodes"] = c["episodes"]
        r["ci_low"], r["ci_high"] = (100 * x for x in c["base_ci" if r is b else "trained_ci"])
        if r is not b:
            r["p_vs_base"] = c["p_value"]


def _cell(row, key):
    v = row.get(key)
    if v is None or v == "":
        return ""
    if key in ("accuracy", "ci_low", "ci_high"):
        return f"{v:.1f}"
    if key == "p_vs_base":
        return f"{v:.3g}"
    if key == "pairs_per_task":
        return f"{v:.2f}"
    if key == "train_loss":
        return f"{v:.4f}"
    if key == "density" and v != "base":
        return f"{v:g}"
    return str(v)


def table_csv(rows) -> str:
    import csv
    import io
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(RESULT_COLUMNS)
    for r in rows:
        w.writerow([_cell(r, k) for k in RESULT_COLUMNS])
    return buf.getvalue()


def table_md(rows, study) -> str:
    unit = "fraction of the densest set" if study.unit == "fraction" else "pairs per task"
    head = ["dataset", f"density ({unit})", "pairs/task", "tasks (planned)", "pairs",
            "train records", "train loss", "test tasks", "episodes", "accuracy % (95% CI)", "p vs base"]
    lines = [f"Density study: {study.model}, "
             + ", ".join(f"{ds} {p} pairs per training set" for ds, p in study.resolved_pairs.items())
             + f"; {study.treedpo_config} {study.train_args}".rstrip(), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        tasks = "" if r["density"] == "base" else f"{r['tasks']} ({r['tasks_planned']})"
        lines.append("| " + " | ".join([
            r["dataset"], "base model" if r["density"] == "base" else _cell(r, "density"),
            _cell(r, "pairs_per_task"), tasks, _cell(r, "pairs"), _cell(r, "train_records"),
            _cell(r, "train_loss"), _cell(r, "eval_tasks"), _cell(r, "episodes"),
            f"{_cell(r, 'accuracy')} [{_cell(r, 'ci_low')}, {_cell(r, 'ci_high')}]" if r.get("ci_low") is not None
            else _cell(r, "accuracy"), _cell(r, "p_vs_base")]) + " |")
    return "\n".join(lines) + "\n"


def _error_bars(pts):
    """matplotlib's [[below], [above]] from each row's interval (none: no bar)."""
    if any(r.get("ci_low") is None for r in pts):
        return None
    return [[r["accuracy"] - r["ci_low"] for r in pts], [r["ci_high"] - r["accuracy"] for r in pts]]


def plot(rows, path, study):
    """Accuracy against density, one line per dataset, its base model as a dashed line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    densities = sorted({r["density"] for r in rows if r["density"] != "base"})
    for i, ds in enumerate(study.datasets):
        color = colors[i % len(colors)]
        pts = sorted((r for r in rows if r["dataset"] == ds and r["density"] != "base"),
                     key=lambda r: r["density"])
        ax.errorbar([r["density"] for r in pts], [r["accuracy"] for r in pts],
                    yerr=_error_bars(pts), fmt="o-", color=color, lw=2, ms=7, capsize=4,
                    label=f"{ds}: trained on {study.resolved_pairs[ds]} pairs (95% CI)")
        for r in pts:
            text = f"{r['tasks']} tasks"
            if r["tasks"] != r["tasks_planned"]:
                text += f"\n({r['tasks_planned']} planned)"
            ax.annotate(text, (r["density"], r["accuracy"]), textcoords="offset points",
                        xytext=(0, 9), ha="center", va="bottom", fontsize=8, color=color)
        base = [r for r in rows if r["dataset"] == ds and r["density"] == "base"]
        if base:
            b = base[0]
            ax.axhline(b["accuracy"], color=color, ls="--", lw=1.3,
                       label=f"{ds}: base model ({b['accuracy']:.1f}%)")
            if b.get("ci_low") is not None:
                ax.axhspan(b["ci_low"], b["ci_high"], color=color, alpha=0.08, lw=0)
    if len(densities) > 1 and densities[-1] / densities[0] >= 4:
        ax.set_xscale("log", base=2)
    ax.set_xticks(densities, [f"{d:g}" for d in densities])
    ax.minorticks_off()
    pad = 0.15 * (densities[-1] - densities[0]) if ax.get_xscale() == "linear" else 0
    if pad:
        ax.set_xlim(densities[0] - pad, densities[-1] + pad)
    elif len(densities) == 1:
        ax.set_xlim(densities[0] / 1.5, densities[0] * 1.5)
    else:
        ax.set_xlim(densities[0] / 1.3, densities[-1] * 1.3)
    accs = [r["accuracy"] for r in rows] + [r[k] for r in rows for k in ("ci_low", "ci_high")
                                            if r.get(k) is not None]
    lo, hi = max(0.0, min(accs) - 10), min(100.0, max(max(accs) + 10, 10.0))
    ax.set_ylim(lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo))  # room for markers at the ends
    ax.set_yticks([t for t in ax.get_yticks() if lo <= t <= hi])
    ax.set_xlabel("trajectory density: " + ("fraction of the densest set (pairs per task / max)"
                                            if study.unit == "fraction" else "pairs per task")
                  + "\n(same pairs per training set; tasks = pairs / pairs per task)")
    ax.set_ylabel("test accuracy (%)")
    n = sorted({r.get("episodes") or r["eval_tasks"] for r in rows})
    ax.set_title(f"Denser trees vs more tasks: {Path(study.model).name}, "
                 f"{'/'.join(map(str, n))} test episodes", fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    save_figure(fig, path)
