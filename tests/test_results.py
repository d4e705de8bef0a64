"""Result files: JSON cells, append-and-flush, partial rows from crashes, bad files, merging."""
import subprocess
import sys

import pytest

from conftest import ROOT
from densepolicy.merge import max_trial_accuracy, merge
from densepolicy.results import ResultFileError, ResultWriter, done_indices, read_results

COLUMNS = ["index", "input", "target", "score", "turns", "history", "log_infos"]


def _row(i, score=1.0, turns=1):
    return {"index": i, "input": f'q{i}\nwith "quotes", commas\r\nand CRLF', "target": "7",
            "score": score, "turns": turns,
            "history": [{"role": "assistant", "content": 'Action:\nprint("x")\nEnd Action'}],
            "log_infos": {"end_reason": "solved"}}


def test_roundtrip_keeps_types_and_text(tmp_path):
    w = ResultWriter(tmp_path / "d.None_split_0.0.0.csv", COLUMNS)
    w.append(_row(0))
    w.append(_row(1, 0.0, 3))
    rows = read_results(tmp_path / "d.None_split_0.0.0.csv")
    assert rows == [_row(0), _row(1, 0.0, 3)]
    # Structured cells are JSON text, never Python reprs.
    raw = (tmp_path / "d.None_split_0.0.0.csv").read_text()
    assert '[{""role"": ""assistant""' in raw and "{'role'" not in raw


def test_partial_last_row_is_dropped_and_writing_resumes(tmp_path):
    path = tmp_path / "d.None_split_0.0.0.csv"
    w = ResultWriter(path, COLUMNS)
    w.append(_row(0))
    full = path.read_bytes()
    w.append(_row(1))
    # Simulate a kill in the middle of the second row, at many cut points.
    second = path.read_bytes()[len(full):]
    for cut in range(1, len(second), 7):
        path.write_bytes(full + second[:cut])
        assert [r["index"] for r in read_results(path)] == [0]
    ResultWriter(path, COLUMNS).append(_row(2))
    assert [r["index"] for r in read_results(path)] == [0, 2]
    assert done_indices(tmp_path, "d") == {0, 2}
    # A merged file counts, a tree run's pairs file beside the shards (no index column) does not.
    ResultWriter(tmp_path / "d.None_split_0.0.None.csv", COLUMNS).append(_row(5))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "d.None_split_0.0.None.pairs.csv").write_text("data_id,selected\r\n1,true\r\n")
    assert done_indices(tmp_path, "d") == {0, 2, 5}


def test_a_cut_row_longer_than_a_read_chunk_is_dropped(tmp_path):
    # The partial-row scan reads 1 MiB at a time: quotes and line ends of one cell span chunks.
    path = tmp_path / "d.None_split_0.0.0.csv"
    w = ResultWriter(path, COLUMNS)
    w.append(_row(0))
    full = path.read_bytes()
    w.append({**_row(1), "input": 'a "quoted"\nline, ' * 150_000})
    second = path.read_bytes()[len(full):]
    assert len(second) > 2 << 20
    for cut in (1 << 20, (1 << 20) + 1, len(second) // 2, len(second) - 3, len(second) - 1):
        path.write_bytes(full + second[:cut])
        ResultWriter(path, COLUMNS).append(_row(2))
        assert [r["index"] for r in read_results(path)] == [0, 2]
    path.write_bytes(full + second)
    ResultWriter(path, COLUMNS).append(_row(2))
    assert [r["index"] for r in read_results(path)] == [0, 1, 2]


def test_malformed_rows_name_file_and_row(tmp_path):
    path = tmp_path / "d.None_split_0.0.0.csv"
    ResultWriter(path, COLUMNS).append(_row(0))
    text = path.read_bytes().decode()
    path.write_bytes((text + '"1","x"\r\n').encode())
    with pytest.raises(ResultFileError, match=r"d.None_split_0.0.0.csv: row 2 has 2 fields"):
        read_results(path)
    with pytest.raises(ResultFileError, match=r"d.None_split_0.0.0.csv: row 2 has 2 fields"):
        ResultWriter(path, COLUMNS)  # never appends to a file it cannot read back
    path.write_bytes(text.replace('"{""end_reason', '"{""end_reason""::').encode())
    with pytest.raises(ResultFileError, match="row 1: column 'log_infos' is not valid JSON"):
        read_results(path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ResultFileError, match="empty.csv: empty"):
        read_results(tmp_path / "empty.csv")


def test_merge_dedupes_moves_shards_and_scores(tmp_path):
    for shard, rows in enumerate([[_row(0), _row(1, 0.0, 10)], [_row(2, 1.0, 5), _row(1, 0.0, 10)]]):
        w = ResultWriter(tmp_path / f"gsm8k.None_split_0.0.{shard}.csv", COLUMNS)
        for r in rows:
            w.append(r)
    report = merge(tmp_path, "gsm8k.None_split_0.0.{}.csv")
    assert (report["shards"], report["unique"], report["duplicates"]) == (2, 3, 1)
    merged = read_results(tmp_path / "gsm8k.None_split_0.0.None.csv")
    assert [r["index"] for r in merged] == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "distributed_result").iterdir()) == [
        "gsm8k.None_split_0.0.0.csv", "gsm8k.None_split_0.0.1.csv"]
    # Max Trial t: task 0 solved in 1 turn, task 2 in 5, task 1 never.
    acc = max_trial_accuracy(merged)
    assert acc[1] == pytest.approx(100 / 3) and acc[4] == pytest.approx(100 / 3)
    assert acc[8] == pytest.approx(200 / 3) and acc[10] == pytest.approx(200 / 3)
    # A later shard (a resumed run) merges into the existing file.
    ResultWriter(tmp_path / "gsm8k.None_split_0.0.0.csv", COLUMNS).append(_row(3))
    report = merge(tmp_path, "gsm8k.None_split_0.0.{}.csv")
    assert report["unique"] == 4 and report["previously_merged"] == 3


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "post_process_test_result.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_cli_merge_and_see_score(tmp_path):
    ResultWriter(tmp_path / "math.None_split_0.0.0.csv", COLUMNS).append(_row(0))
    out = _cli("--merge_distributed_result", "--see_score", "--data_dir", str(tmp_path),
               "--dataset_file_name_list", "math.None_split_0.0.{}.csv")
    assert out.returncode == 0, out.stderr
    assert "1 unique tasks" in out.stdout and "score: 100.00" in out.stdout
    assert "Max Trial 1: 100.00" in out.stdout


def test_cli_bad_input_is_one_line_and_nonzero(tmp_path):
    (tmp_path / "math.None_split_0.0.0.csv").write_text('"index","score"\r\n"0"\r\n')
    out = _cli("--merge_distributed_result", "--data_dir", str(tmp_path),
               "--dataset_file_name_list", "math.None_split_0.0.{}.csv")
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0 and "math.None_split_0.0.0.csv: row 1" in out.stderr
    assert not (tmp_path / "math.None_split_0.0.None.csv").exists()
    out = _cli("--see_score", "--data_dir", str(tmp_path), "--dataset_file_name_list", "nothing.{}.csv")
    assert out.returncode == 1 and "nothing.None.csv: no such file" in out.stderr


@pytest.mark.parametrize("header, cells, message", [
    (["idx", "score"], ["0", "1"], "the header lacks column(s) index"),       # a renamed column
    (["index", "points"], ["0", "1"], "the header lacks column(s) score"),
    (["index", "score"], ["[0]", "1"], "row 1: index must be an integer and score a number, got [0] and 1"),
    (["index", "score"], ["0", '"high"'], "row 1: index must be an integer and score a number, got 0 and 'high'"),
])
def test_cli_merge_of_a_shard_with_wrong_columns_is_one_line(tmp_path, header, cells, message):
    shard = tmp_path / "gsm8k.None_split_0.0.1.csv"
    shard.write_text(",".join(f'"{c}"' for c in header) + "\r\n" +
                     ",".join('"' + c.replace('"', '""') + '"' for c in cells) + "\r\n")
    for what in (["--merge_distributed_result"], ["--merge_distributed_result", "--see_score"]):
        out = _cli(*what, "--data_dir", str(tmp_path), "--dataset_file_name_list", "gsm8k.None_split_0.0.{}.csv")
        assert out.returncode == 1 and out.stderr == f"error: {shard}: {message}\n", out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [shard.name]     # nothing merged or moved
    # --see_score on a merged file that lacks the column says the same.
    shard.rename(tmp_path / "gsm8k.None_split_0.0.None.csv")
    out = _cli("--see_score", "--data_dir", str(tmp_path), "--dataset_file_name_list", "gsm8k.None_split_0.0.{}.csv")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "gsm8k.None_split_0.0.None.csv" in out.stderr
