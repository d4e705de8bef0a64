"""Result files: one CSV row per finished task, appended and flushed as soon as the task ends.

Layout (SPEC §6): eval_results/<agent>.<model>/<run dir>/<dataset>.None_split_0.0.<shard>.csv.
Structured cells (histories, per-rollout maps, log infos) are JSON, never Python reprs. Every
field is quoted, so a row cut short by a crash is detectable (unterminated quote, wrong field
count, or missing line end) and is dropped when the file is opened again.
"""
import csv
import glob
import json
import math
import os
import sys
from pathlib import Path

csv.field_size_limit(sys.maxsize)

SHARD_PATTERN = "{dataset}.None_split_0.0.{shard}.csv"
# Columns whose cells are JSON; everything else is text. Task fields keep their own type in JSON
# only when they are not strings (see encode_cell).
JSON_COLUMNS = {"index", "score", "res", "steps", "turns", "history", "log_infos", "res_cur",
                "full_index", "policies", "seed", "success", "sample_scores",
                # preference-pair files (densepolicy/pairs.py)
                "data_id", "contrast_step", "selected",
                *(f"{side}_{f}" for side in ("positive", "negative")
                  for f in ("run_index", "history", "visit_number", "value", "avg_depth"))}


class ResultFileError(ValueError):
    """A result file that cannot be read; the message names the file and row."""


class MissingColumnsError(ResultFileError):
    """A file whose header lacks columns a reader needs (`missing`): likely another kind of file."""

    def __init__(self, path, missing):
        super().__init__(f"{path}: the header lacks column(s) {', '.join(missing)}")
        self.missing = missing


def model_dir_name(model: str) -> str:
    return model.strip("/").replace("/", "_")


def run_dir(root: str | os.PathLike, agent: str, model: str, run_name: str) -> Path:
    return Path(root) / f"{agent}.{model_dir_name(model)}" / run_name


def shard_path(directory: str | os.PathLike, dataset: str, shard) -> Path:
    return Path(directory) / SHARD_PATTERN.format(dataset=dataset, shard=shard)


def encode_cell(column: str, value) -> str:
    t = type(value)
    if t is str and column not in JSON_COLUMNS:
        return value
    # Scalars by hand: json.dumps per cell dominated writing millions of pair rows.
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float and math.isfinite(value):
        return repr(value)  # what json.dumps writes for a finite float
    return json.dumps(value, ensure_ascii=False)


def decode_cell(column: str, text: str):
    if column in JSON_COLUMNS:
        return json.loads(text)
    return text


def _line(cells) -> str:
    """One CSV record, every field quoted (a cut row is then detectable), CRLF-terminated."""
    return ",".join('"' + c.replace('"', '""') + '"' for c in cells) + "\r\n"


def _encode_row(columns: list[str], row: dict, encoded: dict | None = None) -> str:
    encoded = encoded or {}
    return _line([encoded[c] if c in encoded else encode_cell(c, row.get(c)) for c in columns])


def _complete_length(path: Path) -> tuple[int, int]:
    """(bytes up to the end of the last complete record, file size), streaming. A record ends at
    a line end outside quotes (we write CRLF; a bare LF from another tool ends one too). '"' and
    '\n' never occur inside a UTF-8 multi-byte character, so the bytes can be scanned as they are."""
    complete = size = 0
    inside_quotes = False
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            start = 0
            while (j := chunk.find(b"\n", start)) >= 0:
                inside_quotes ^= chunk.count(b'"', start, j) % 2 == 1
                start = j + 1
                if not inside_quotes:
                    complete = size + start
            inside_quotes ^= chunk.count(b'"', start) % 2 == 1
            size += len(chunk)
    return complete, size


class ResultWriter:
    """Appends finished rows to one shard file; on open, drops a partial last row."""

    def __init__(self, path: str | os.PathLike, columns: list[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.columns = list(columns)
        if self.path.exists() and self.path.stat().st_size:
            complete, size = _complete_length(self.path)
            if complete == 0:
                raise ResultFileError(f"{self.path}: no readable header; move it away to start over")
            if complete < size:
                print(f"warning: {self.path}: dropped a partial last row left by an interrupted run",
                      file=sys.stderr)
                os.truncate(self.path, complete)
            records = _records(self.path)
            _, header = next(records)
            for _ in records:  # every row well-formed before we append to the file
                pass
            # Keep the file's own column order; new columns would make it unreadable.
            missing = [c for c in self.columns if c not in header]
            if missing:
                raise ResultFileError(f"{self.path}: existing file lacks columns {missing}")
            self.columns = header
        else:
            self._write(_line(self.columns))

    def _write(self, text: str):
        # One write per row on an O_APPEND descriptor, then fsync: a kill can cut at most this row.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, text.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def append(self, row: dict):
        self._write(_encode_row(self.columns, row))


def iter_results(path: str | os.PathLike, raw: bool = False, required=()):
    """(row number, row) of a result or pair file, streaming: one row in memory at a time.

    JSON cells are decoded (raw=True leaves every cell as its text, for pass-through copies). A
    partial last row (a crash cut the file mid-row) is skipped with a warning; anything else
    malformed raises ResultFileError naming the file and row, and so does a header lacking any
    of the `required` columns (a renamed column would otherwise surface as a KeyError later).
    """
    records = _records(Path(path), required)
    _, header = next(records)
    for i, fields in records:
        yield i, _decode_row(path, header, fields, i, raw)


def _records(path: Path, required=()):
    """The one CSV reader of result and pair files: (0, header), then (row number, fields) of each
    complete row, field count checked; see iter_results for what it skips and what it raises."""
    if not path.exists():
        raise ResultFileError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ResultFileError(f"{path}: empty file (no CSV header)")
    with open(path, "rb") as fb:
        fb.seek(-1, os.SEEK_END)
        partial_tail = fb.read(1) != b"\n"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader)
        except (csv.Error, UnicodeDecodeError, StopIteration) as e:
            raise ResultFileError(f"{path}: unreadable CSV header ({e})") from None
        missing = [c for c in required if c not in header]
        if missing:
            raise MissingColumnsError(path, missing)
        yield 0, header
        held, i = None, 0  # one record of lookahead: only the last one may be partial
        while True:
            try:
                fields = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as e:
                # EOF inside a quoted field (every field is quoted, so only a cut can leave one
                # open), or a cut multi-byte character at the end: a cut last row.
                if "end of data" in str(e) or (partial_tail and isinstance(e, UnicodeDecodeError)):
                    _warn_partial(path, i + 1)
                    partial_tail = False
                    break
                raise ResultFileError(f"{path}: row {i + 1}: malformed CSV ({e})") from None
            if held is not None:
                yield i, _checked(path, header, held, i)
            i += 1
            held = fields
        if held is not None:
            if partial_tail:  # we end every record with a line end: this one was cut
                _warn_partial(path, i)
            else:
                yield i, _checked(path, header, held, i)


def _checked(path, header, fields, i) -> list[str]:
    if len(fields) != len(header):
        raise ResultFileError(f"{path}: row {i} has {len(fields)} fields, expected {len(header)}")
    return fields


def _warn_partial(path, i):
    print(f"warning: {path}: row {i}: ignoring a partial last row (interrupted write)", file=sys.stderr)


def _decode_row(path, header, fields, i, raw) -> dict:
    if raw:
        return dict(zip(header, fields))
    row = {}
    for column, cell in zip(header, fields):
        try:
            row[column] = decode_cell(column, cell)
        except json.JSONDecodeError as e:
            raise ResultFileError(f"{path}: row {i}: column {column!r} is not valid JSON ({e})") from None
    return row


def read_results(path: str | os.PathLike, required=()) -> list[dict]:
    """All complete rows of a result file (see iter_results)."""
    return [row for _, row in iter_results(path, required=required)]


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> None:
    """A matplotlib figure as a PNG, written under a temporary name and renamed; the figure is closed."""
    import matplotlib.pyplot as plt
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


class AtomicFile:
    """A text file written under `<name>.tmp` and renamed into place on commit(); abort(), or
    leaving the with-block by an exception, removes the temporary file and the folders made for
    it: no partial output."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        # Folders made for this file go again on abort: a failed run leaves no empty folder.
        self.made = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.f = open(self.tmp, "w", encoding="utf-8", newline="")

    def write(self, text: str):
        self.f.write(text)

    def commit(self):
        self.f.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        self.f.close()
        self.tmp.unlink(missing_ok=True)
        for d in self.made:       # innermost first; one that holds something else stays
            try:
                d.rmdir()
            except OSError:
                break

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        self.commit() if exc_type is None else self.abort()


class AtomicResultWriter(AtomicFile):
    """A whole result or pair file, rows streamed in, renamed into place at the end."""

    def __init__(self, path: str | os.PathLike, columns: list[str]):
        super().__init__(path)
        self.columns = list(columns)
        self.rows = 0
        self.write(_line(self.columns))

    def add_cells(self, cells: list[str]):
        """One row of already encoded cell texts (a pass-through copy)."""
        self.write(_line(cells))
        self.rows += 1

    def add(self, row: dict, encoded: dict | None = None):
        """One row; `encoded` holds cells already encoded (e.g. JSON built incrementally)."""
        self.write(_encode_row(self.columns, row, encoded))
        self.rows += 1


def write_results(path: str | os.PathLike, rows: list[dict], columns: list[str] | None = None):
    """Write a whole result file atomically (temporary name, then rename)."""
    columns = columns or list(dict.fromkeys(c for r in rows for c in r))
    with AtomicResultWriter(path, columns) as w:
        for row in rows:
            w.add(row)


def finished_rows(directory: str | os.PathLike, dataset: str) -> dict:
    """{task index: row} over every shard and merged file of this dataset in a run directory
    (archived shards under distributed_result/ too); the first row seen of an index wins."""
    rows = {}
    pattern = SHARD_PATTERN.format(dataset=glob.escape(dataset), shard="*")
    # Only shards (an integer) and the merged file (None): a tree run's pairs file
    # (<dataset>.None_split_0.0.None.pairs.csv) matches the glob too.
    head, tail = SHARD_PATTERN.format(dataset=dataset, shard="\0").split("\0")
    for p in sorted(glob.glob(os.path.join(glob.escape(str(directory)), "**", pattern), recursive=True)):
        shard = os.path.basename(p)[len(head):-len(tail)]
        if not (shard == "None" or shard.isdigit()):
            continue
        for row in read_results(p, required=("index",)):
            rows.setdefault(row["index"], row)
    return rows


def done_indices(directory: str | os.PathLike, dataset: str) -> set:
    """Indices of tasks already finished in any shard or merged file of this dataset."""
    return set(finished_rows(directory, dataset))
