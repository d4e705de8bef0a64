"""Result files: one CSV row per finished task, appended and flushed as soon as the task ends.

Layout (SPEC §6): eval_results/<agent>.<model>/<run dir>/<dataset>.None_split_0.0.<shard>.csv.
Structured cells (histories, per-rollout maps, log infos) are JSON, never Python reprs. Every
field is quoted, so a row cut short by a crash is detectable (unterminated quote, wrong field
count, or missing line end) and is dropped when the file is opened again.
"""
import csv
import glob
import io
import json
import os
import sys
from pathlib import Path

csv.field_size_limit(sys.maxsize)

SHARD_PATTERN = "{dataset}.None_split_0.0.{shard}.csv"
# Columns whose cells are JSON; everything else is text. Task fields keep their own type in JSON
# only when they are not strings (see encode_cell).
JSON_COLUMNS = {"index", "score", "res", "steps", "turns", "history", "log_infos", "res_cur",
                "full_index", "policies", "seed", "success"}


class ResultFileError(ValueError):
    """A result file that cannot be read; the message names the file and row."""


def model_dir_name(model: str) -> str:
    return model.strip("/").replace("/", "_")


def run_dir(root: str | os.PathLike, agent: str, model: str, run_name: str) -> Path:
    return Path(root) / f"{agent}.{model_dir_name(model)}" / run_name


def shard_path(directory: str | os.PathLike, dataset: str, shard) -> Path:
    return Path(directory) / SHARD_PATTERN.format(dataset=dataset, shard=shard)


def encode_cell(column: str, value) -> str:
    if isinstance(value, str) and column not in JSON_COLUMNS:
        return value
    return json.dumps(value, ensure_ascii=False)


def decode_cell(column: str, text: str):
    if column in JSON_COLUMNS:
        return json.loads(text)
    return text


def _rows_text(columns: list[str], rows: list[dict], header: bool = False) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([encode_cell(c, row.get(c)) for c in columns])
    return buf.getvalue()


def _record_ends(text: str):
    """Offsets just past each complete record: a line end outside quotes. We write CRLF; a bare
    LF (a file re-saved by another tool) ends a record too."""
    i, quotes = 0, 0
    while (j := text.find("\n", i)) >= 0:
        quotes += text.count('"', i, j)
        i = j + 1
        if quotes % 2 == 0:
            yield i
            quotes = 0


def _parse(path: Path) -> tuple[list[str] | None, list[list[str]], int, bool]:
    """Header, complete data records, byte length of the complete part, and whether a partial
    (unterminated) tail follows it. Raises ResultFileError on a complete but malformed record."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        text = data[:e.start].decode("utf-8")  # a crash can cut a multi-byte character
    ends = list(_record_ends(text))
    complete = text[:ends[-1]] if ends else ""
    records = list(csv.reader(io.StringIO(complete, newline="")))
    if not records:
        return None, [], 0, bool(data)
    header = records[0]
    for i, fields in enumerate(records[1:], start=1):
        if len(fields) != len(header):
            raise ResultFileError(f"{path}: row {i} has {len(fields)} fields, expected {len(header)}")
    good_end = len(complete.encode("utf-8"))
    return header, records[1:], good_end, good_end < len(data)


class ResultWriter:
    """Appends finished rows to one shard file; on open, drops a partial last row."""

    def __init__(self, path: str | os.PathLike, columns: list[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = list(columns)
        if self.path.exists() and self.path.stat().st_size:
            header, _, good_end, partial = _parse(self.path)
            if header is None:
                raise ResultFileError(f"{self.path}: no readable header; move it away to start over")
            if partial:
                print(f"warning: {self.path}: dropped a partial last row left by an interrupted run",
                      file=sys.stderr)
                os.truncate(self.path, good_end)
            # Keep the file's own column order; new columns would make it unreadable.
            missing = [c for c in self.columns if c not in header]
            if missing:
                raise ResultFileError(f"{self.path}: existing file lacks columns {missing}")
            self.columns = header
        else:
            self._write(_rows_text(self.columns, [], header=True))

    def _write(self, text: str):
        # One write per row on an O_APPEND descriptor, then fsync: a kill can cut at most this row.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, row: dict):
        self._write(_rows_text(self.columns, [row]))


def read_results(path: str | os.PathLike) -> list[dict]:
    """All complete rows of a result file, JSON cells decoded. A partial last row is ignored with
    a warning; anything else malformed raises ResultFileError naming file and row."""
    path = Path(path)
    if not path.exists():
        raise ResultFileError(f"{path}: no such result file")
    header, records, _, partial = _parse(path)
    if header is None:
        raise ResultFileError(f"{path}: empty or unreadable (no CSV header)")
    if partial:
        print(f"warning: {path}: ignoring a partial last row (interrupted run)", file=sys.stderr)
    rows = []
    for i, fields in enumerate(records, start=1):
        row = {}
        for column, cell in zip(header, fields):
            try:
                row[column] = decode_cell(column, cell)
            except json.JSONDecodeError as e:
                raise ResultFileError(f"{path}: row {i}: column {column!r} is not valid JSON ({e})")
        rows.append(row)
    return rows


def write_results(path: str | os.PathLike, rows: list[dict], columns: list[str] | None = None):
    """Write a whole result file atomically (temporary name, then rename)."""
    path = Path(path)
    columns = columns or list(dict.fromkeys(c for r in rows for c in r))
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_rows_text(columns, rows, header=True), encoding="utf-8", newline="")
    os.replace(tmp, path)


def done_indices(directory: str | os.PathLike, dataset: str) -> set:
    """Indices of tasks already finished in any shard or merged file of this dataset."""
    done = set()
    pattern = SHARD_PATTERN.format(dataset=glob.escape(dataset), shard="*")
    for p in glob.glob(os.path.join(glob.escape(str(directory)), "**", pattern), recursive=True):
        for row in read_results(p):
            done.add(row["index"])
    return done
