"""The demo job (demo.sh -> pipeline/demo.py): its settings and run directory, its flags, and the
whole job for real on the CPU with tiny settings (the embedded model on the vLLM CPU server, real
LLaMA-Factory): summary.json against the rows and pairs on disk, a rerun that skips every stage
and starts no server, another run directory for other settings.

Needs .venv-treedpo (see test_treedpo.py); DENSEPOLICY_SKIP_TREEDPO=1 skips the job itself.
"""
import json
import os
import random
import subprocess
import sys

import pytest

from conftest import ROOT, free_port
from densepolicy import engines
from densepolicy.results import finished_rows, iter_results, read_results
from pipeline import demo, stages
from test_treedpo import treedpo  # noqa: F401 (the fixture: .venv-treedpo set up)

DS = "babyai_GoToRedBallGrey"
# 12 train tasks: about half of the first ones are mixed (sometimes solved), and only those give
# pairs; with 8 a run without any selected pair is a few percent likely.
TINY = ["--tree_tasks", "12", "--eval_tasks", "4", "--sampled_tasks", "2", "--samples", "1",
        "--eval_args", "--n_icl 2 --max_steps 2 --max_tokens 48",
        "--train_args", "max_steps=2 gradient_accumulation_steps=1"]


def dry(*argv, script=("bash", "demo.sh")):
    return subprocess.run([*script, *argv], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "DRY_RUN": "1"})


def run_dir_line(r):
    assert r.returncode == 0, r.stderr
    [line] = r.stdout.splitlines()
    assert line.startswith("== run directory ")
    return line.removeprefix("== run directory ")


# ----------------------------------------------------------------------------- settings, flags
def test_demo_sh_and_demo_py_agree_and_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "out"
    via_sh = run_dir_line(dry("--out", str(out)))
    via_py = run_dir_line(dry("--out", str(out), script=(sys.executable, "-m", "pipeline.demo")))
    assert via_sh == via_py  # demo.sh's constants are demo.py's defaults
    assert not out.exists()
    # The flag form users know, a value that starts with '-' included.
    flags = ["--tree_tasks", "40", "--train_args", "max_steps=16 learning_rate=5.0e-4", "--eval_args", "--n_icl"]
    changed = run_dir_line(dry("--out", str(out), *flags))
    assert changed != via_sh
    assert changed == run_dir_line(dry("--out", str(out), *flags, script=(sys.executable, "-m", "pipeline.demo")))
    assert demo.parse_args(flags).eval_args == "--n_icl"


def test_every_hashed_setting_and_only_those_name_the_run():
    base = demo.run_hash(demo.settings_of(demo.parse_args([])))
    other = {"model": "/some/model", "dataset": "math_level1", "tree_tasks": "25", "tree_args": "--n_icl 1",
             "eval_tasks": "201", "sampled_tasks": "99", "samples": "3", "eval_args": "--n_icl 1",
             "train_args": "max_steps=13", "cutoff_len": "2048", "pair_examples": "sampled"}
    assert set(other) == set(demo.HASHED)
    hashes = {demo.run_hash(demo.settings_of(demo.parse_args([f"--{k}", v]))) for k, v in other.items()}
    assert len(hashes) == len(other) and base not in hashes
    for k, v in (("out", "/elsewhere"), ("start_id", "5"), ("port_base", "9000"), ("verbose", "1")):
        assert demo.run_hash(demo.settings_of(demo.parse_args([f"--{k}", v]))) == base
    # The same value spelled as a flag is the same run.
    assert demo.run_hash(demo.settings_of(demo.parse_args(["--tree_tasks", "24"]))) == base


def test_the_engine_names_the_run_too(monkeypatch):
    """Rows served in another dtype, compiled, or by another engine are other results."""
    args = demo.parse_args([])
    monkeypatch.delenv("ENGINE", raising=False)
    monkeypatch.delenv("NUM_GPUS", raising=False)
    base = demo.settings_of(args)
    assert base["SERVER"] == f"vllm-cpu dtype={engines.VLLM_CPU_DTYPE} eager"
    native = engines.VLLM_CPU_DTYPE
    for other in ("auto", "float32", "bfloat16"):
        if other != native:
            monkeypatch.setattr(engines, "VLLM_CPU_DTYPE", other)
            assert demo.run_hash(demo.settings_of(args)) != demo.run_hash(base), other
    monkeypatch.setattr(engines, "VLLM_CPU_DTYPE", native)
    variants = [{"ENGINE": "transformers"}, {"NUM_GPUS": "1"}]
    for env in variants:
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            assert demo.run_hash(demo.settings_of(args)) != demo.run_hash(base), env
    monkeypatch.setenv("NUM_GPUS", "two")
    with pytest.raises(demo.SettingsError, match="NUM_GPUS must be a number, got 'two'"):
        demo.settings_of(args)


def test_training_precision_follows_the_cpu_and_names_the_run(monkeypatch):
    """bf16 mixed precision only on a CPU-only machine that computes bf16 natively, never over a
    precision TRAIN_ARGS sets, and the run directory says which."""
    monkeypatch.delenv("NUM_GPUS", raising=False)
    for native, added in (("bfloat16", ["bf16=true"]), ("float32", [])):
        monkeypatch.setattr(engines, "native_cpu_dtype", lambda: native)
        assert stages.train_precision(0) == added
        assert stages.train_precision(1) == []  # a GPU config says its own
        for own in ("bf16=false", "fp16=true", "pure_bf16=true"):
            assert stages.train_precision(0, ["max_steps=3", own]) == []
        args = demo.parse_args([])
        assert demo.settings_of(args)["TRAIN_PRECISION"] == (" ".join(added) or "as configured")
        assert demo.settings_of(demo.parse_args(["--train_args", "max_steps=12 bf16=false"]))[
            "TRAIN_PRECISION"] == "as configured"
    monkeypatch.setattr(engines, "native_cpu_dtype", lambda: "bfloat16")
    bf16 = demo.run_hash(demo.settings_of(demo.parse_args([])))
    monkeypatch.setattr(engines, "native_cpu_dtype", lambda: "float32")
    assert demo.run_hash(demo.settings_of(demo.parse_args([]))) != bf16


@pytest.mark.parametrize("argv, message", [
    (["--no_such", "1"], "error: unknown flag --no_such"),
    (["--tree_task", "3"], "error: unknown flag --tree_task"),  # no abbreviations
    (["tree_tasks", "3"], "error: expected --name value, got 'tree_tasks'"),
    (["--tree_tasks", "x"], "error: argument --tree_tasks: expected a positive integer, got 'x'"),
    (["--samples", "0"], "error: argument --samples: expected a positive integer, got '0'"),
    (["--pair_examples", "all"], "error: argument --pair_examples: invalid choice: 'all'"),
    (["--cutoff_len"], "error: argument --cutoff_len: expected one argument"),
])
def test_flag_errors_are_one_line_naming_the_flag(argv, message):
    r = dry(*argv)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith(message), r.stderr


def test_a_run_directory_of_other_settings_is_refused(tmp_path):
    out = tmp_path / "out"
    run = out / run_dir_line(dry("--out", str(out), script=(sys.executable, "-m", "pipeline.demo"))).rsplit("/", 1)[1]
    run.mkdir(parents=True)
    settings = demo.settings_of(demo.parse_args([]))
    (run / "settings.json").write_text(json.dumps({**settings, "SAMPLES": "7"}))
    r = subprocess.run([sys.executable, "-m", "pipeline.demo", "--out", str(out)], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {run}/settings.json holds a run made with other settings "
                                             f"(SAMPLES); remove that directory or give another --out"]
    assert sorted(p.name for p in run.iterdir()) == ["settings.json"]  # no stage ran


# ------------------------------------------------------------------------------- the whole job
def stage_lines(stdout):
    return [line.split("] ", 1)[1] for line in stdout.splitlines() if line.startswith("== [")]


def stage_name(line):
    return line.split(":", 1)[0]


def mtimes(root):
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_demo_end_to_end_resumes(treedpo, tmp_path):  # noqa: F811 (the fixture)
    out = tmp_path / "out"
    port, start_id = free_port(), random.randrange(1000, 90000)
    env = {**os.environ, "TMUX_TMPDIR": str(tmp_path), "LOG_DIR": str(tmp_path / "logs"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    argv = [sys.executable, "-m", "pipeline.demo", *TINY, "--out", str(out), "--port_base", str(port),
            "--start_id", str(start_id)]
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = stage_lines(r.stdout)
    assert [stage_name(x) for x in lines] == [
        "serve (base model)", "sample trees", "merge trees", "preference pairs", "merge pairs",
        f"evaluate {DS} (base greedy)", f"evaluate {DS} (base sampled)", "dataset", "train", "merge adapter",
        "serve (trained model)", f"evaluate {DS} (trained greedy)", f"evaluate {DS} (trained sampled)", "summary"]
    assert not any("skipped" in x for x in lines), lines
    [run] = out.glob("run-*")
    assert json.loads((run / "settings.json").read_text()) == demo.settings_of(demo.parse_args(TINY))
    # The servers and sessions of the job are gone.
    assert not engines.healthy(port, timeout=2)
    assert not (tmp_path / "logs" / f"run_{start_id}" / "sessions.txt").exists()

    # summary.json, in the run and in OUT, from the rows and pairs on disk.
    summary = json.loads((run / "summary.json").read_text())
    assert json.loads((out / "summary.json").read_text()) == summary
    for figure in (run / "summary.png", out / "summary.png"):
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    [pairs_file] = run.glob(f"codeact_agent_tree.*/*/{DS}/{DS}.None_split_0.0.None.pairs.csv")
    pairs = [row for _, row in iter_results(pairs_file)]
    assert summary["pairs"] == len(pairs) and summary["selected"] == sum(p["selected"] for p in pairs) > 0
    assert len(read_results(run / "merged_pairs.csv")) == summary["selected"]  # the demo keeps every selected pair
    train_set = json.loads((run / "train_set.json").read_text())
    assert train_set["records"] + train_set["dropped_too_long"] == summary["selected"]
    assert len(json.loads((run / "data" / "demo_tree_dpo.json").read_text())) == train_set["records"]
    assert summary["train_loss"] == json.loads((run / "lora" / "train_results.json").read_text())["train_loss"]
    assert (run / "trained_model" / "config.json").exists()
    trained_with = (run / "logs" / "train.log").read_text().splitlines()[0]  # the command, as run
    assert trained_with.endswith(" ".join(["cutoff_len=1024", *stages.train_precision(0), *TINY[-1].split()]))
    for measure, pattern, tasks, episodes in (("greedy", "greedy_*", 4, 4), ("sampled", "temperature1x1_*", 2, 2)):
        s = summary[measure]
        assert s["episodes"] == episodes
        for side in ("base", "trained"):
            [directory] = run.glob(f"eval_{side}/codeact_agent.*/{pattern}")
            rows = finished_rows(directory, DS)
            assert sorted(rows) == list(range(tasks))
            solved = [x > 0 for r in rows.values() for x in (r.get("sample_scores") or [r["score"]])]
            assert len(solved) == episodes and s[f"{side}_acc"] == sum(solved) / episodes
            assert s[f"{side}_ci"][0] <= s[f"{side}_acc"] <= s[f"{side}_ci"][1]
        assert 0 <= s["p_value"] <= 1
    assert summary["episodes"] == 4 and summary["run"] == str(run)
    tsv = (run / "stage_seconds.tsv").read_text().splitlines()
    assert [x.split("\t")[0] for x in tsv] == [stage_name(x) for x in lines]
    assert summary["seconds"] == sum(float(x.split("\t")[1]) for x in tsv[:-1])  # the summary's own comes after

    # The same command again: every stage skipped, no server started, nothing rewritten but the summary.
    before = mtimes(run)
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    again = stage_lines(r.stdout)
    assert [stage_name(x) for x in again] == [stage_name(x) for x in lines if not x.startswith("serve")]
    assert all(": skipped" in x for x in again[:-1]), again
    after = mtimes(run)
    assert {k for k in after if after[k] != before.get(k)} == {"summary.json", "summary.png", "stage_seconds.tsv"}
    resumed = json.loads((run / "summary.json").read_text())
    tsv = (run / "stage_seconds.tsv").read_text().splitlines()
    assert len(tsv) == len(lines) + 1  # one more summary line
    assert resumed["seconds"] == sum(float(x.split("\t")[1]) for x in tsv[:-1]) >= summary["seconds"]
    assert {k: v for k, v in resumed.items() if not k.startswith("seconds")} == \
        {k: v for k, v in summary.items() if not k.startswith("seconds")}

    # Other settings: another run directory.
    other = run_dir_line(dry(*TINY, "--out", str(out), "--eval_tasks", "3",
                             script=(sys.executable, "-m", "pipeline.demo")))
    assert other != str(run) and other.startswith(str(out)) and not os.path.exists(other)
