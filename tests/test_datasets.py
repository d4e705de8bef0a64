"""GSM8K / MATH loaders on the real files, and their error messages."""
import json

import pytest

import dataset
from dataset import DataError
from dataset.math_tasks import FILES, load_tasks, resolve_data_dir


@pytest.mark.parametrize("name,split,count", [
    ("gsm8k", "test", 1319), ("gsm8k", "train", 7473), ("math", "test", 5000),
    ("math", "train", 7500), ("math500", "test", 500)])
def test_counts(name, split, count):
    tasks = load_tasks(name, split, None)
    assert len(tasks) == count
    assert [t["index"] for t in tasks] == list(range(count))
    assert all(t["input"] for t in tasks)
    # Two MATH train solutions really end in an empty "\boxed{}": kept, with target "".
    assert [t["index"] for t in tasks if not t["target"]] == ([5529, 5531] if (name, split) == ("math", "train") else [])


def test_gsm8k_fields():
    t = load_tasks("gsm8k", "test", None)[0]
    assert t["input"].startswith("Janet")
    assert t["target"] == "18"
    assert t["answer"].endswith("#### 18")


def test_math_fields():
    t = load_tasks("math", "test", None)[1]
    assert t["target"] == "\\frac{1}{2}"
    assert t["level"] == "Level 5" and t["type"] == "Algebra"
    m = load_tasks("math500", "test", None)[0]
    assert m["input"].startswith("Convert the point $(0,3)$")
    assert m["target"] == m["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert m["type"] == "Precalculus" and m["level"] == 2


def test_math500_is_a_subset_of_math_test():
    problems = {t["input"] for t in load_tasks("math", "test", None)}
    assert all(t["input"] in problems for t in load_tasks("math500", "test", None))


def test_dispatcher_and_info():
    assert len(dataset.load_tasks("math500", "test")) == 500
    assert dataset.dataset_info("gsm8k")["n_icl"] == 8
    assert dataset.dataset_info("math")["kind"] == "math"
    with pytest.raises(DataError, match="unknown dataset"):
        dataset.load_tasks("nope", "test")
    assert {"babyai", "alfworld_put", "gsm8k"} <= set(dataset.names())


def test_data_dir_resolution(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert resolve_data_dir(None) == tmp_path
    assert resolve_data_dir("/x") == type(tmp_path)("/x")
    monkeypatch.delenv("DATA_DIR")
    assert (resolve_data_dir(None) / FILES["gsm8k"]["test"]).is_file()


def test_missing_file_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")   # no hub fallback in tests
    with pytest.raises(DataError) as e:
        load_tasks("gsm8k", "test", str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg
    assert str(tmp_path / "gsm8k" / "test.jsonl") in msg and "download" in msg
    with pytest.raises(DataError, match="math500 has no 'train' split"):
        load_tasks("math500", "train", str(tmp_path))


def test_malformed_row(tmp_path):
    d = tmp_path / "gsm8k"
    d.mkdir()
    good = json.dumps({"question": "1+1?", "answer": "2\n#### 2"})
    (d / "test.jsonl").write_text(good + "\n" + good + "\n{not json\n")
    with pytest.raises(DataError, match=r"test\.jsonl line 3"):
        load_tasks("gsm8k", "test", str(tmp_path))
    (d / "test.jsonl").write_text(good + "\n" + json.dumps({"question": "q"}) + "\n")
    with pytest.raises(DataError, match=r"line 2.*answer"):
        load_tasks("gsm8k", "test", str(tmp_path))
    (d / "test.jsonl").write_text(good + "\n\n" + good + "\n")   # blank lines are skipped
    assert [t["index"] for t in load_tasks("gsm8k", "test", str(tmp_path))] == [0, 1]


def test_math_by_level_keeps_file_positions():
    from dataset import load_tasks
    level1 = load_tasks("math_level1", "train")
    everything = load_tasks("math", "train")
    assert len(level1) == sum(t["level"] == "Level 1" for t in everything) > 100
    assert all(everything[t["index"]] == t for t in level1)
