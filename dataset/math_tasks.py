"""GSM8K and MATH (incl. the MATH-500 subset) as lists of task dicts.

Each task: `index` (row position in the file), `input` (the question), `target` (gsm8k: the number
after '####'; math: the last \\boxed{} of the solution), plus the source fields.
Files are read from the offline copies under `data_dir` (see /work/shared/data/*/SOURCE.md);
the Hugging Face hub is only a fallback when a file is missing.
"""
import json
import os
import re
from pathlib import Path

from dataset import DataError, DatasetSpec, TreeDefaults, register
from densepolicy import paths
from densepolicy.scoring import extract_boxed, extract_gsm8k_target


# name -> split -> path relative to data_dir
FILES = {
    "gsm8k": {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"},
    "math": {"train": "math/train.jsonl", "test": "math/test.jsonl"},
    "math500": {"test": "math/math500/test.jsonl"},
}

# Hub copies used only when the offline file is missing (and `datasets` is installed and online).
HUB = {
    "gsm8k": "openai/gsm8k (config 'main')",
    "math": "EleutherAI/hendrycks_math (7 subject configs, concatenated alphabetically)",
    "math500": "HuggingFaceH4/MATH-500",
}
MATH_LEVELS = tuple(f"math_level{k}" for k in range(1, 6))  # MATH restricted to one difficulty level
MATH_SUBJECTS = ["algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                 "number_theory", "prealgebra", "precalculus"]


resolve_data_dir = paths.data_dir


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"malformed JSON in {path} line {lineno}: {e.msg}") from None
            if not isinstance(row, dict):
                raise DataError(f"malformed row in {path} line {lineno}: expected a JSON object")
            rows.append((lineno, row))
    return rows


def _from_hub(dataset: str, split: str) -> list[dict] | None:
    """Rows from the hub in the offline files' format, or None when that is not possible."""
    if os.environ.get("HF_HUB_OFFLINE") or os.environ.get("HF_DATASETS_OFFLINE"):
        return None
    try:
        import datasets
        if dataset == "gsm8k":
            return [dict(r) for r in datasets.load_dataset("openai/gsm8k", "main", split=split)]
        if dataset == "math500":
            return [dict(r) for r in datasets.load_dataset("HuggingFaceH4/MATH-500", split="test")]
        rows = []
        for subject in MATH_SUBJECTS:
            rows += [dict(r) for r in datasets.load_dataset("EleutherAI/hendrycks_math", subject, split=split)]
        return rows
    except Exception:   # not installed, offline, hub changed: fall back to the clear error
        return None


def _check(row: dict, keys: tuple, where: str):
    missing = [k for k in keys if not isinstance(row.get(k), str)]
    if missing:
        raise DataError(f"malformed row in {where}: missing or non-string field(s) {missing}")


def _to_task(dataset: str, i: int, row: dict, where: str) -> dict:
    if dataset == "gsm8k":
        _check(row, ("question", "answer"), where)
        target = extract_gsm8k_target(row["answer"])
        if not target:
            raise DataError(f"malformed row in {where}: answer has no '#### <number>'")
        return {"index": i, "input": row["question"], "target": target, "answer": row["answer"]}
    _check(row, ("problem", "solution"), where)
    target = extract_boxed(row["solution"])
    if target is None:
        raise DataError(f"malformed row in {where}: solution has no \\boxed{{}} answer")
    task = {"index": i, "input": row["problem"], "target": target,
            "level": row.get("level"), "type": row.get("type", row.get("subject")),
            "solution": row["solution"]}
    for k in ("subject", "answer"):   # MATH-500 extras
        if k in row:
            task[k] = row[k]
    return task


def load_tasks(dataset: str, split: str, data_dir: str | None = None) -> list[dict]:
    """Tasks of gsm8k / math / math500 for split 'train' or 'test', in file order.
    `math_level<k>` is MATH restricted to difficulty level k (indices stay file positions)."""
    if (level := re.fullmatch(r"math_level([1-5])", dataset)):
        return [t for t in load_tasks("math", split, data_dir) if t["level"] == f"Level {level[1]}"]
    if dataset not in FILES:
        raise DataError(f"unknown dataset {dataset!r}; this loader knows {sorted(FILES)}")
    if split not in FILES[dataset]:
        raise DataError(f"{dataset} has no {split!r} split; available: {sorted(FILES[dataset])}")
    root = resolve_data_dir(data_dir)
    path = root / FILES[dataset][split]
    if path.is_file():
        rows = [(f"{path} line {n}", row) for n, row in read_jsonl(path)]
    else:
        hub_rows = _from_hub(dataset, split)
        if hub_rows is None:
            raise DataError(
                f"missing {path}: download {dataset} ({HUB[dataset]}, split {split}) as JSON lines to "
                f"{path} (see SOURCE.md in the shared data folder), or set DATA_DIR / --data_dir")
        rows = [(f"hub {HUB[dataset]} row {i}", row) for i, row in enumerate(hub_rows)]
    return [_to_task(dataset, i, row, where) for i, (where, row) in enumerate(rows)]


# Settings: SPEC §4 (evaluation) and §5 (trees).
register(DatasetSpec(
    family="gsm8k", names=("gsm8k",), load_tasks=load_tasks, kind="gsm8k", examples="gsm8k",
    n_icl=8, max_turn=10, max_steps=30,
    tree=TreeDefaults(base=10, window_size=16, max_steps=32, max_sample_number=256)))
register(DatasetSpec(
    family="math", names=("math", "math500", *MATH_LEVELS), load_tasks=load_tasks, kind="math",
    examples="math", n_icl=1, max_turn=10, max_steps=30,
    tree=TreeDefaults(base=10, window_size=8, max_steps=8, max_sample_number=512)))
