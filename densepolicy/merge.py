"""Merging per-process shard files into one result file, and the score tables (SPEC §7)."""
import glob
import os
import shutil
from pathlib import Path

from densepolicy.results import ResultFileError, iter_results, write_results

MAX_TRIALS = (1, 4, 8, 10)
RESULT_COLUMNS = ("index", "score")   # what merging and the score tables read from every row


def shard_files(data_dir: str | os.PathLike, pattern: str) -> list[Path]:
    """Shard files matching `pattern` ('{}' stands for the shard id), merged file excluded."""
    if "{}" not in pattern:
        raise ValueError(f"--dataset_file_name_list entry {pattern!r} needs '{{}}' where the shard id goes")
    hits = glob.glob(os.path.join(glob.escape(str(data_dir)), glob.escape(pattern).replace("{}", "*")))
    merged = merged_file(data_dir, pattern).name
    return sorted((Path(h) for h in hits if Path(h).name != merged),
                  key=lambda p: (len(p.name), p.name))


def merged_file(data_dir: str | os.PathLike, pattern: str) -> Path:
    return Path(data_dir) / pattern.replace("{}", "None")


def result_rows(path) -> list[dict]:
    """The rows of one result file, each with an integer index and a numeric score (what the
    dedupe, the sort and the mean need); anything else is a one-line ResultFileError."""
    rows = []
    for i, row in iter_results(path, required=RESULT_COLUMNS):
        if type(row["index"]) is not int or not isinstance(row["score"], (int, float)):
            raise ResultFileError(f"{path}: row {i}: index must be an integer and score a number, "
                                  f"got {row['index']!r} and {row['score']!r}")
        rows.append(row)
    return rows


def merge(data_dir: str | os.PathLike, pattern: str) -> dict:
    """Concatenate the shards (and an earlier merge) into the `None` file, deduplicated by task
    index, then move the shards under distributed_result/. Returns counts for the report."""
    data_dir = Path(data_dir)
    shards = shard_files(data_dir, pattern)
    target = merged_file(data_dir, pattern)
    rows = result_rows(target) if target.exists() else []
    previous = len(rows)
    for shard in shards:
        rows.extend(result_rows(shard))
    seen, unique = set(), []
    for row in rows:
        if row["index"] not in seen:
            seen.add(row["index"])
            unique.append(row)
    if not unique:
        raise ResultFileError(f"{data_dir}: no finished task in any file matching {pattern!r}")
    unique.sort(key=lambda r: r["index"])
    write_results(target, unique)
    archive = data_dir / "distributed_result"
    archive.mkdir(exist_ok=True)
    for shard in shards:
        shutil.move(str(shard), archive / shard.name)
    return {"shards": len(shards), "previously_merged": previous, "rows": len(rows),
            "unique": len(unique), "duplicates": len(rows) - len(unique),
            # score is 0/1 per task, or the share of a task's sampled episodes solved
            "mean_score": 100.0 * sum(min(float(r["score"]), 1.0) for r in unique) / len(unique),
            "path": target}


def max_trial_accuracy(rows: list[dict], trials=MAX_TRIALS) -> dict[int, float]:
    """Share of tasks solved within t answer attempts (tasks without a `turns` count: solved; sampled
    episodes of a task: each counts for its share)."""
    def solved_within(row, t):
        turns = row.get("turns")
        if isinstance(turns, list):
            scores = row.get("sample_scores") or []
            return sum(s > 0 and n <= t for s, n in zip(scores, turns)) / max(len(turns), 1)
        return float(row["score"]) > 0 and (not isinstance(turns, int) or turns <= t)
    return {t: 100.0 * sum(solved_within(r, t) for r in rows) / max(len(rows), 1) for t in trials}


def task_type_accuracy(rows: list[dict], task_types) -> dict[str, float]:
    """Share of tasks solved per task type (ALFWorld's, from the dataset specs), in that order, and
    their mean; empty when no row has one of those types."""
    by_type = {}
    for row in rows:
        by_type.setdefault(row.get("task_type"), []).append(float(row["score"]) > 0)
    table = {t: 100.0 * sum(v) / len(v) for t in task_types if (v := by_type.get(t))}
    if table:
        table["mean"] = sum(table.values()) / len(table)
    return table
