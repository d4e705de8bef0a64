"""view_tree.py: a tree result file -> a self-contained HTML page, checked in headless Chromium.

A synthetic tree written with the real ResultWriter gives exact assertions (mixed outcomes, so
chosen and rejected siblings exist); a tree sampled by the real tree agent against the real model
server checks that real rows draw too. Screenshots are saved under the test's tmp dir (the path
is printed) and, when VIEW_TREE_SHOTS is set, copied into that directory.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from densepolicy.pairs import parse_tree, tree_pairs
from densepolicy.results import ResultWriter, read_results, shard_path
from densepolicy.tree import label_temperature, run_key, tree_stats

COLUMNS = ["index", "input", "target", "score", "res", "res_cur", "full_index", "steps", "history",
           "policies", "log_infos"]
# Task 7: three first steps; (0) solved twice below it, (1) never, (2) answers at once.
# Selected pairs: (0)>(1), (2)>(1), (0,0)>(0,2), (0,1)>(0,2); (2)>(0) is a pair, not selected.
MIXED = {(0, 0): 1, (0, 1): 1, (0, 2): 0, (1, 0): 0, (1, 1): 0, (2,): 1}
FAILED = {(0, 0): 0, (1, 0): 0, (1, 1): 0}


def action(node):
    # Distinct per node (identical-action pairs are dropped), with markup that must stay text.
    return f"Action:\nprint('step {run_key(node)}') # <b>not bold</b> & </script>\nEnd Action"


def observation(node):
    return f"step {run_key(node)} printed"


def tree_row(index, runs, depth=2):
    history, logs = {}, {}
    for run, outcome in runs.items():
        msgs = []
        for d in range(1, len(run) + 1):
            node = run[:d]
            last = d == len(run)
            if last and outcome:
                msgs.append({"role": "assistant", "content": f"Answer: 72 (run {run_key(run)})"})
            else:
                msgs += [{"role": "assistant", "content": action(node)},
                         {"role": "user", "content": observation(node)}]
        history[run_key(run)] = msgs
        logs[run_key(run)] = {"end_reason": "answer" if outcome else "max_steps",
                          "steps": [{"temperature": label_temperature(l), "reply": "action",
                                     "finish_reason": "stop", "completion_tokens": 20} for l in run]}
    k = [run_key(r) for r in runs]
    return {"index": index, "input": f"Task {index}: how many clips?", "target": "72",
            "score": float(any(runs.values())), "res": list(runs.values()),
            "res_cur": dict(zip(k, runs.values())),
            "full_index": {run_key(r): list(r) + [0] * (depth - len(r)) for r in runs},
            "steps": {run_key(r): len(r) for r in runs}, "history": history,
            "policies": {run_key(r): [label_temperature(l) for l in r] for r in runs},
            "log_infos": {"env_state": None, "rollouts": len(runs), "rounds": 2, "runs": logs}}


@pytest.fixture
def synthetic(tmp_path):
    path = shard_path(tmp_path, "gsm8k", "None")
    w = ResultWriter(path, COLUMNS)
    w.append(tree_row(7, MIXED))
    w.append(tree_row(8, FAILED))
    return path


def view(*args):
    return subprocess.run([sys.executable, "view_tree.py", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.fail("headless Chromium tests need the Debian packages chromium and chromium-driver "
                    "(./setup.sh installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    # No network: a dead proxy and a resolver that resolves nothing; the page must not need either.
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1600,1000", "--proxy-server=127.0.0.1:9",
              "--host-resolver-rules=MAP * ~NOTFOUND"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service(driver), options=opts)
    try:
        yield d
    finally:
        d.quit()


def open_page(browser, html_path):
    browser.get(Path(html_path).resolve().as_uri())
    # Nothing but the file itself was loaded: no scripts, styles, fonts or images from anywhere.
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0


def labels(browser, css):
    return {e.get_attribute("data-label") for e in browser.find_elements("css selector", css)}


def shoot(browser, tmp_path, name):
    png = tmp_path / name
    browser.execute_script("window.scrollTo(0, 0)")  # the header and legend in view
    browser.save_screenshot(str(png))
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("VIEW_TREE_SHOTS"):
        shutil.copy(png, Path(os.environ["VIEW_TREE_SHOTS"]) / name)
    print(f"screenshot: {png}")
    return png


def test_one_task_page_shows_the_tree_the_pairs_see(synthetic, tmp_path, browser):
    out = tmp_path / "task7.html"
    r = view(synthetic, "--index", 7, "--out", out)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(out) and not list(tmp_path.glob("*.tmp"))
    text = out.read_text()
    # Self-contained: no link, source or import of anything outside the file.
    assert not re.search(r"https?://|\bsrc=|@import|url\(", text)
    assert "<b>not bold</b>" not in text  # model text is data, never markup

    row = read_results(synthetic)[0]
    runs, steps = parse_tree(row)
    stats = tree_stats(runs, steps)
    pairs, _, _ = tree_pairs(row, [])
    open_page(browser, out)
    nodes = browser.find_elements("css selector", "section#task-7 g.node")
    assert len(nodes) == len(stats) == 8
    assert labels(browser, "g.node") == {run_key(n) for n in stats}
    # Box text: label, temperature, value and visits as the pair extraction computes them.
    box = browser.find_element("css selector", 'g.node[data-label="0"]')
    assert box.text.split() == ["0", "t=0.0", "v=0.67", "n=3"]
    assert browser.find_element("css selector", 'g.node[data-label="2"]').text.split() == \
        ["2", "✓", "t=0.5", "v=1.00", "n=1"]

    # Chosen / rejected siblings, selected ones thick: exactly the selected pairs of tree_pairs.
    sel = [p for p in pairs if p["selected"]]
    assert labels(browser, "g.node.chosen.sel") == {run_key(p["positive_run_index"]) for p in sel} == \
        {"0", "2", "0,0", "0,1"}
    assert labels(browser, "g.node.rejected.sel") == {run_key(p["negative_run_index"]) for p in sel} == \
        {"1", "0,2"}
    edge = browser.find_element("css selector", 'path.edge.chosen.sel[data-label="0"]')
    assert edge.value_of_css_property("stroke") == "rgb(31, 138, 58)"
    edge = browser.find_element("css selector", 'path.edge.rejected.sel[data-label="1"]')
    assert edge.value_of_css_property("stroke") == "rgb(198, 40, 40)"

    # Solved runs: gold-ringed boxes, gold halos along their paths, a button per run.
    solved = {run_key(r) for r, o in runs.items() if o}
    assert labels(browser, "g.node.solved") == solved == {"0,0", "0,1", "2"}
    assert labels(browser, "button.run") == solved
    rect = browser.find_element("css selector", 'g.node.solved[data-label="0,1"] rect')
    assert rect.value_of_css_property("stroke") == "rgb(217, 154, 0)"
    assert labels(browser, "svg.tree path.halo") == {"0", "0,0", "0,1", "2"}
    assert labels(browser, "g.node.failed") == {"0,2", "1,0", "1,1"}

    # Clicking a box reveals its action and observation (as text, markup shown literally).
    panel = browser.find_element("id", "panel")
    assert "step 0,2" not in panel.text
    browser.find_element("css selector", 'g.node[data-label="0,2"]').click()
    assert browser.find_element("css selector", "#panel .action-text").text == action((0, 2))
    assert browser.find_element("css selector", "#panel .obs-text").text == observation((0, 2))
    assert "rejected against 0,0" in panel.text and "selected" in panel.text
    assert browser.find_elements("css selector", 'g.node.active[data-label="0,2"]')
    # A solved run end: its answer, and no observation after it.
    browser.find_element("css selector", 'button.run[data-label="2"]').click()
    assert browser.find_element("css selector", "#panel .action-text").text == "Answer: 72 (run 2)"
    assert "ended at this action" in browser.find_element("css selector", "#panel .obs-text").text
    assert "solved run ends here" in panel.text
    browser.find_element("css selector", "g.root").click()
    assert "Task 7: how many clips?" in panel.text
    # A node's address in the URL opens it (clicking put the last one there).
    browser.find_element("css selector", 'g.node[data-label="0,1"]').click()
    assert browser.current_url.endswith("#task-7/0,1")
    browser.get(out.resolve().as_uri() + "#task-7/1,0")
    assert browser.find_element("css selector", "#panel .action-text").text == action((1, 0))
    browser.find_element("css selector", 'g.node[data-label="0,1"]').click()
    shoot(browser, tmp_path, "view_tree_synthetic.png")


def test_report_over_a_whole_file(synthetic, tmp_path, browser):
    r = view(synthetic)
    out = synthetic.with_name("gsm8k.None_split_0.0.None.tree.html")
    assert r.returncode == 0 and r.stdout.strip() == str(out), r.stderr
    open_page(browser, out)
    rows = browser.find_elements("css selector", "table.tasks tbody tr")
    assert [row.text.split()[:7] for row in rows] == [
        ["7", "1", "6", "3", "8", "5", "4"], ["8", "0", "3", "0", "5", "0", "0"]]
    assert len(browser.find_elements("css selector", "section#task-8 g.node")) == \
        len(tree_stats(FAILED)) == 5
    assert not browser.find_elements("css selector", "section#task-8 g.node.chosen")
    assert not browser.find_elements("css selector", "section#task-8 g.node.solved")
    # Trees start collapsed; the table's link opens one.
    details = browser.find_element("css selector", "section#task-8 details")
    assert details.get_attribute("open") is None
    browser.find_element("link text", "8").click()
    assert details.get_attribute("open") is not None
    browser.find_element("css selector", 'section#task-8 g.node[data-label="1,1"]').click()
    assert browser.find_element("css selector", "#panel .action-text").text == action((1, 1))
    assert "task 8" in browser.find_element("id", "panel").text
    shoot(browser, tmp_path, "view_tree_report.png")


def test_a_node_chosen_and_rejected_is_drawn_as_both():
    from densepolicy.viewer import task_tree, tree_svg
    # Siblings valued 1, 0.5, 0: the middle one wins one selected pair and loses another.
    tree = task_tree(tree_row(1, {(0,): 1, (1, 0): 1, (1, 1): 0, (2,): 0}))
    assert tree["nodes"][(1,)]["roles"] == {"chosen", "rejected"} and tree["selected"] == 4  # + (1,0) > (1,1)
    assert '<path class="edge chosen rejected sel" data-label="1"' in tree_svg(tree)


def test_bad_input_one_line_error_and_no_output(synthetic, tmp_path):
    r = view(tmp_path / "missing.csv")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "missing.csv" in r.stderr
    r = view(synthetic, "--index", 99)
    assert r.returncode != 0 and r.stderr.count("\n") == 1
    assert str(synthetic) in r.stderr and "no task with index 99" in r.stderr
    bad = tmp_path / "bad" / "gsm8k.None_split_0.0.None.csv"
    w = ResultWriter(bad, COLUMNS)
    w.append(tree_row(7, MIXED))
    w.append({**tree_row(8, FAILED), "res_cur": {"0,x": 1}})
    out = tmp_path / "bad.html"
    r = view(bad, "--out", out)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert f"{bad}: row 2 (index 8)" in r.stderr and "'0,x'" in r.stderr
    assert not out.exists() and not list(tmp_path.glob("bad.html*"))
    # The good row alone still draws.
    assert view(bad, "--index", 7, "--out", out).returncode == 0 and out.exists()


def test_a_real_sampled_tree(tmp_path, model_server, browser):
    base_url, served = model_server
    out_root = tmp_path / "eval_results"
    run = subprocess.run(
        [sys.executable, "-m", "agents.codeact_agent_tree", "--model", "SmolLM2-135M-Instruct",
         "--served_model", served, "--base_url", base_url, "--dataset", "gsm8k", "--task_limit", "1",
         "--base", "3", "--max_steps", "2", "--window_size", "2", "--max_sample_number", "1",
         "--max_rollouts", "5", "--n_icl", "0", "--max_tokens", "48", "--output_root", str(out_root)],
        cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout + run.stderr
    csv = out_root / "codeact_agent_tree.SmolLM2-135M-Instruct" / "temperature_1_3_2" / \
        "gsm8k.None_split_0.0.0.csv"
    row = read_results(csv)[0]
    runs, steps = parse_tree(row)
    stats = tree_stats(runs, steps)
    out = tmp_path / "real.html"
    r = view(csv, "--index", row["index"], "--out", out)
    assert r.returncode == 0, r.stderr
    open_page(browser, out)
    assert labels(browser, "g.node") == {run_key(n) for n in stats} and len(stats) >= 3
    assert labels(browser, "g.node.solved") == {run_key(r) for r, o in runs.items() if o}
    # Click the first step of a run that went on: the panel shows its real action and
    # observation; a run that ended at once has no observation.
    run_ = next((r for r in sorted(runs) if len(r) > 1), sorted(runs)[0])
    hist = row["history"][run_key(run_)]
    browser.find_element("css selector", f'g.node[data-label="{run_[0]}"]').click()
    shown = browser.find_element("css selector", "#panel .action-text").get_attribute("textContent")
    assert shown == hist[0]["content"]
    shown = browser.find_element("css selector", "#panel .obs-text").get_attribute("textContent")
    assert shown == (hist[1]["content"] if len(run_) > 1 else "(none: the episode ended at this action)")
    shoot(browser, tmp_path, "view_tree_real.png")
