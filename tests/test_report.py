"""densepolicy.report on result files written as the agents write them (ResultWriter, the plain
agent's columns): the numbers in summary.json are the ones the rows hold."""
import json
import subprocess
import sys

from conftest import ROOT
from agents.codeact_agent import COLUMNS
from densepolicy import pairs as pairs_lib
from densepolicy.results import ResultWriter, write_results

DS = "babyai_GoToRedBallGrey"


def run_cli(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def write_run(directory, scores):
    """One shard: task i with sample_scores scores[i]; score is their mean, as the agent writes."""
    directory.mkdir(parents=True)
    w = ResultWriter(directory / f"{DS}.None_split_0.0.0.csv", ["index", "input"] + COLUMNS)
    for i, s in enumerate(scores):
        w.append({"index": i, "input": "go to the red ball", "score": sum(s) / len(s), "steps": 1,
                  "turns": 0, "history": [], "log_infos": {}, "sample_scores": s})


def png_width(path) -> int:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and not path.with_name(path.name + ".tmp.png").exists()
    return int.from_bytes(data[16:20], "big")


def test_report_reads_sampled_and_greedy_rows(tmp_path):
    base, trained = tmp_path / "base", tmp_path / "trained"
    write_run(base / "greedy", [[0.0]] * 30 + [[1.0]] * 10)
    write_run(trained / "greedy", [[1.0]] * 30 + [[1.0]] * 10)
    write_run(base / "sampled", [[0.0, 1.0]] * 40)
    write_run(trained / "sampled", [[1.0, 1.0]] * 40)
    pair = {"data_id": 1, "input": "x", "target": "", "contrast_step": 1, "selected": True,
            "positive_run_index": [0], "negative_run_index": [1], "positive_history": [],
            "negative_history": []}
    write_results(tmp_path / "pairs.csv", [pair, {**pair, "negative_run_index": [0], "positive_run_index": [1]},
                                           {**pair, "selected": False, "negative_run_index": [0]}],
                  pairs_lib.PAIR_COLUMNS)
    out = tmp_path / "summary.json"
    r = run_cli("-m", "densepolicy.report", "--dataset", DS, "--pairs", str(tmp_path / "pairs.csv"),
                "--greedy", str(base / "greedy"), str(trained / "greedy"),
                "--sampled", str(base / "sampled"), str(trained / "sampled"), "--out", str(out),
                "--figure", str(tmp_path / "summary.png"))
    assert r.returncode == 0, r.stderr
    assert png_width(tmp_path / "summary.png") > 700  # a panel per measure
    s = json.loads(out.read_text())
    assert s["episodes"] == 40 and s["pairs"] == 3 and s["selected"] == 2 and s["selected_greedy_rejected"] == 1
    g, smp = s["greedy"], s["sampled"]
    assert (g["base_acc"], g["trained_acc"]) == (0.25, 1.0) and g["p_value"] < 1e-8  # 30 discordant, all one way
    assert (smp["episodes"], smp["base_acc"], smp["trained_acc"]) == (80, 0.5, 1.0) and smp["p_value"] < 0.01
    assert smp["base_ci"][0] < 0.5 < smp["base_ci"][1]


def test_report_on_runs_without_shared_tasks_is_one_line(tmp_path):
    write_run(tmp_path / "a", [[1.0]])
    (tmp_path / "b").mkdir()
    write_results(tmp_path / "pairs.csv", [], pairs_lib.PAIR_COLUMNS)
    r = run_cli("-m", "densepolicy.report", "--dataset", DS, "--pairs", str(tmp_path / "pairs.csv"),
                "--greedy", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "s.json"))
    assert r.returncode == 1 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.json").exists()


def test_report_records_train_loss_and_rejects_other_files(tmp_path):
    write_run(tmp_path / "a", [[1.0], [0.0]])
    write_run(tmp_path / "b", [[1.0], [1.0]])
    write_results(tmp_path / "pairs.csv", [], pairs_lib.PAIR_COLUMNS)
    common = ["-m", "densepolicy.report", "--dataset", DS, "--pairs", str(tmp_path / "pairs.csv"),
              "--greedy", str(tmp_path / "a"), str(tmp_path / "b")]
    (tmp_path / "train_results.json").write_text(json.dumps({"epoch": 12.0, "train_loss": 0.25}))
    r = run_cli(*common, "--train_results", str(tmp_path / "train_results.json"), "--out", str(tmp_path / "s.json"),
                "--figure", str(tmp_path / "s.png"))
    assert r.returncode == 0, r.stderr
    assert png_width(tmp_path / "s.png") < 500  # greedy only: one panel
    assert json.loads((tmp_path / "s.json").read_text())["train_loss"] == 0.25
    r = run_cli(*common, "--train_results", str(tmp_path / "pairs.csv"), "--out", str(tmp_path / "t.json"))
    assert r.returncode == 1 and "pairs.csv" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "t.json").exists()

