"""Output files of batch commands that are never lost and never destroy anything.

The rules (``coreecho predict`` and ``coreecho embed``):

- **Never an input, never anything but a file.** An output path that is (or links to) one of the inputs, a folder,
  a symbolic link, a device (``/dev/null``), a FIFO or a socket is refused before any work (:func:`check_output`,
  which uses :func:`coreecho._atomic.check_output_target`). Missing parent folders are created.
- **One run per output.** ``predict``/``embed`` hold a lock on the output for the whole run
  (:func:`coreecho._lock.output_lock`, a ``.OUT.lock`` file next to it): a second run on the same output refuses at
  once, naming the run that holds it, so neither loses rows.
- **Rows survive a kill.** Each finished row is appended to a *journal* next to the output (``OUT.partial``, or
  ``OUT.partial-RANK`` under torchrun) and flushed at once (:class:`Journal`); a killed run keeps every finished
  row there. The output itself is written only at the end, to a temporary file renamed over ``OUT``
  (:func:`replace_atomically`: a new file follows the umask, a replaced one keeps its mode), so a rerun never empties
  an earlier result before it has a better one; temporaries of an interrupted run are removed by the next one.
- **Resume.** ``--resume`` reads ``OUT`` and its journals (:func:`read_rows`), computes only the inputs that are
  missing or failed there, and writes one output in input order.

Formats: CSV (lists space-separated, missing values empty), JSON (an array) and JSON Lines (real lists, ``null``
for missing values). Journals are CSV for CSV outputs and JSON Lines otherwise.

Example:
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "ef.csv")
    >>> j = Journal(partial_path(out), "csv", ["path", "ef"])
    >>> j.write({"path": "a.avi", "ef": 55.0}); j.close()
    >>> [r["path"] for r in read_rows(partial_path(out), "csv")]
    ['a.avi']
"""

from __future__ import annotations

import contextlib
import csv
import glob
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence, TextIO

from coreecho._atomic import check_output_target, replace_atomically, temporary_name
from coreecho._csvcells import escape_row, unescape_row
from coreecho.cli._common import UsageError
from coreecho.errors import OutputError

__all__ = ["row_format", "output_format", "FORMATS", "check_output", "partial_path", "find_partials", "Journal",
           "StreamWriter", "read_rows", "write_rows", "replace_atomically", "same_file", "CsvRows", "read_table",
           "RUN_MARK"]

_TEXT_FORMATS = ("csv", "json", "jsonl")
#: Row formats of ``coreecho predict`` by the output's extension.
FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}
#: First line of a CSV journal, followed by its run record as JSON (JSON Lines journals: ``{"coreecho_run": ...}``).
RUN_MARK = "# coreecho run "


def row_format(output: str | None) -> str:
    """``csv``, ``json`` or ``jsonl`` from the output's suffix (anything else, and stdout, is CSV)."""
    suffix = Path(output).suffix.lower() if output else ""
    return FORMATS.get(suffix, "csv")


def output_format(output: str | None, *, option: str = "--output") -> str:
    """The row format of ``output`` from its extension (stdout: CSV).

    Raises:
        UsageError: any other extension (``out.npz``, ``out.xlsx``, no extension), before anything is computed.
    """
    if output is None:
        return "csv"
    suffix = Path(output).suffix.lower()
    if suffix not in FORMATS:
        hint = " (embeddings are written by 'coreecho embed')" if suffix in (".npz", ".parquet") else ""
        raise UsageError(f"{option} {output}: the format comes from the extension, and "
                         f"{suffix or 'a name without one'} is not a format of this command{hint}; use .csv, .json "
                         "or .jsonl (.ndjson)")
    return FORMATS[suffix]


def journal_format(fmt: str) -> str:
    """The journal of a CSV output is CSV; of JSON and JSON Lines, JSON Lines."""
    return "csv" if fmt == "csv" else "jsonl"


class CsvRows:
    """CSV rows ending in ``\n``, where every value reads back as written (any file name: newlines, a lone
    carriage return, U+2028, quotes, commas): a row holding a carriage return is written with every field quoted,
    since Python's writer quotes only the characters of its line terminator. Text cells starting with a
    spreadsheet formula prefix get a leading ``'`` (:mod:`coreecho._csvcells`); :func:`read_table` removes it."""

    def __init__(self, fh: TextIO, fields: Sequence[str]):
        self.plain = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
        self.quoted = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n",
                                     quoting=csv.QUOTE_ALL)

    def writeheader(self) -> None:
        self.plain.writeheader()

    def writerow(self, row: dict[str, Any]) -> None:
        cr = any(isinstance(v, str) and "\r" in v for v in row.values())
        (self.quoted if cr else self.plain).writerow(escape_row(row))

    def writerows(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.writerow(row)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file (through links, ``..``, case-insensitive file systems)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def clashing_input(target: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> str | os.PathLike | None:
    """The input that ``target`` names (the same file through links, ``..`` or a hard link), or ``None``: the one
    "an output is never an input" check of every command.

    Example:
        >>> clashing_input("runs/../a.avi", ["b.avi", "a.avi"])
        'a.avi'
    """
    t = Path(target)
    exists = t.exists() or t.is_symlink()
    for item in inputs:
        if (exists and Path(item).exists() and same_file(t, item)) or os.path.realpath(t) == os.path.realpath(item):
            return item
    return None


def check_output(output: str, inputs: Sequence[Any], *, option: str = "--output",
                 targets: Sequence[str] | None = None) -> Path:
    """Refuse an output that is a folder or one of the inputs; create its folder; check that it can be written.

    Args:
        output: the path the user gave.
        inputs: the inputs (paths; other items are ignored).
        option: the option's name, for messages.
        targets: every file the command will write for ``output`` (default: ``[output]``).

    Raises:
        UsageError: the output is a folder, an input, read-only, or its folder cannot be created or written.
    """
    paths = [str(i) for i in inputs if isinstance(i, (str, os.PathLike))]
    for target in targets or [output]:
        t = Path(target)
        if t.is_dir():
            raise UsageError(f"{option} {target} is a folder; give a file name, e.g. {Path(target) / 'out'}"
                             f"{Path(output).suffix or '.csv'}")
        item = clashing_input(t, paths)
        if item is not None:
            overwrite = "refusing to overwrite it. Choose" if t.exists() or t.is_symlink() else "choose"
            raise UsageError(f"{option} {target} is also an input ({item}); {overwrite} another output name")
        for path in (t, partial_path(t)):
            try:
                check_output_target(path)  # a link, device, FIFO or socket is never replaced
            except OutputError as err:
                raise UsageError(f"{option} {err}") from None
        if t.exists() and not os.access(t, os.W_OK):
            raise UsageError(f"{option} {target} is read-only; make it writable or choose another output name")
    parent = Path(output).absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{option} {output}: {_first_file(parent)} is a file, not a folder; choose another "
                         "output path") from None
    except OSError as err:
        raise UsageError(f"{option} {output}: cannot create the folder {parent} ({err.strerror or err}); choose "
                         "another output path") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {output}: the folder {parent} is not writable; choose another output path")
    return Path(output)


def _first_file(folder: Path) -> Path:
    for p in [folder, *folder.parents]:
        if p.exists() and not p.is_dir():
            return p
    return folder


def partial_path(output: str | os.PathLike, rank: int = 0, world: int = 1) -> Path:
    """The journal of ``output`` written by one process: ``OUT.partial``, or ``OUT.partial-RANK`` under torchrun."""
    return Path(f"{output}.partial" if world <= 1 else f"{output}.partial-{rank}")


def find_partials(output: str | os.PathLike) -> list[Path]:
    """Journals of ``output`` left by earlier runs (any number of processes)."""
    found = [Path(f"{output}.partial")] + sorted(Path(p) for p in glob.glob(glob.escape(str(output)) + ".partial-*"))
    return [p for p in found if p.is_file()]


def _header_line(fmt: str, record: dict[str, Any]) -> str:
    """The first line of a journal: its run record (see :mod:`coreecho.cli.runrecord`)."""
    body = json.dumps(record, allow_nan=False, ensure_ascii=True)
    return (RUN_MARK + body if fmt == "csv" else json.dumps({"coreecho_run": record}, ensure_ascii=True)) + "\n"


class Journal:
    """Rows appended to a file and flushed one by one: what survives a killed run.

    Args:
        path: the journal file.
        fmt: ``"csv"`` or ``"jsonl"``.
        fields: CSV columns.
        append: keep the rows already there (``--resume``); a last row cut by a kill (even inside a quoted file
            name holding a newline) is dropped first: the complete rows, as a CSV parser reads them, are written
            again (atomically) before new ones are appended.
        record: the run record written as the journal's first line (``--resume`` compares it with its own).
    """

    def __init__(self, path: str | os.PathLike, fmt: str, fields: Sequence[str], append: bool = False,
                 record: dict[str, Any] | None = None):
        self.path, self.format, self.count = Path(path), fmt, 0
        if append and self.path.is_file():
            old, rows = read_table(self.path, fmt)
            head = record if record is not None else old

            def rewrite(fh: TextIO) -> None:
                if head is not None:
                    fh.write(_header_line(fmt, head))
                write_rows(fh, fmt, rows, fields)

            replace_atomically(self.path, rewrite)
        else:
            append = False
        self.fh: TextIO = open(self.path, "a" if append else "w", newline="", encoding="utf-8")
        self.csv = CsvRows(self.fh, fields) \
            if fmt == "csv" else None
        if not append:
            with self._named():
                if record is not None:
                    self.fh.write(_header_line(fmt, record))
                if self.csv is not None:
                    self.csv.writeheader()
                self.fh.flush()

    def write(self, row: dict[str, Any]) -> None:
        """Append one row and flush it to the operating system (it survives SIGKILL from now on)."""
        with self._named():
            if self.csv is not None:
                self.csv.writerow(row)
            else:
                self.fh.write(json.dumps(row, allow_nan=False) + "\n")
            self.fh.flush()
        self.count += 1

    def close(self) -> None:
        """Flush to disk and close (the file is closed even when the flush fails)."""
        if self.fh.closed:
            return
        try:
            with self._named():
                self.fh.flush()
            try:
                os.fsync(self.fh.fileno())
            except OSError:
                pass
        finally:
            try:
                self.fh.close()
            except OSError:
                pass  # the flush above already failed with the file's name

    @contextlib.contextmanager
    def _named(self) -> Iterator[None]:
        """An :class:`OSError` of a write (a full disk, a file-size limit) re-raised with this file's name."""
        try:
            yield
        except OSError as err:
            if err.filename is not None:
                raise
            raise OSError(err.errno, err.strerror, str(self.path)) from err


class StreamWriter:
    """Rows to a text stream (stdout) as they come: CSV, a JSON array or JSON Lines."""

    def __init__(self, fmt: str, fields: Sequence[str], fh: TextIO | None = None):
        self.format, self.fh, self.count = fmt, fh or sys.stdout, 0
        self.csv = CsvRows(self.fh, fields) \
            if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writeheader()
        elif fmt == "json":
            self.fh.write("[\n")

    def write(self, row: dict[str, Any]) -> None:
        """One row, flushed."""
        if self.csv is not None:
            self.csv.writerow(row)
        elif self.format == "json":
            self.fh.write((",\n" if self.count else "") + json.dumps(row, allow_nan=False))
        else:
            self.fh.write(json.dumps(row, allow_nan=False) + "\n")
        self.count += 1
        self.fh.flush()

    def close(self) -> None:
        """End the JSON array; flush."""
        if self.format == "json":
            self.fh.write(("\n" if self.count else "") + "]\n")
        self.fh.flush()


def read_rows(path: str | os.PathLike, fmt: str, *, key: str = "path") -> list[dict[str, Any]]:
    """Rows of an earlier output or journal, for ``--resume`` (see :func:`read_table`)."""
    return read_table(path, fmt, key=key)[1]


def read_table(path: str | os.PathLike, fmt: str, *, key: str = "path") -> tuple[dict[str, Any] | None,
                                                                                 list[dict[str, Any]]]:
    """The run record (a journal's first line, else ``None``) and the rows of an earlier output or journal.

    Read with real parsers: a CSV cell may hold newlines, U+2028, quotes and commas; a leading ``'`` added against
    spreadsheet formulas is removed. A last row cut by a kill is dropped: one without its final newline, and one
    cut inside a quoted cell (the CSV parser, in strict mode, meets the end of the data inside quotes).

    Raises:
        UsageError: the file is not a table of rows with a ``key`` column (not a coreecho output), or is damaged
            before its last row.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise UsageError(f"--resume: cannot read {p} ({err.strerror or err})") from None
    text = raw[: raw.rfind(b"\n") + 1].decode("utf-8", errors="replace") if fmt != "json" else \
        raw.decode("utf-8", errors="replace")
    advice = "remove --resume to replace it"
    record: dict[str, Any] | None = None
    rows: list[dict[str, Any]]
    if fmt == "csv":
        if text.startswith(RUN_MARK):
            first, _, text = text.partition("\n")
            record = _record(first[len(RUN_MARK):], p)
        fields, records = _csv_records(text, p)
        if fields is None:
            return record, []
        if key not in fields:
            raise UsageError(f"--resume: {p} has no {key!r} column; it is not an output of this command. Choose "
                             "another output (without --resume, it would be replaced)")
        rows = [unescape_row(dict(zip(fields, r))) for r in records]
        rows = [r for r in rows if r.get(key)]
    elif fmt == "json":
        try:
            data = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as err:
            raise UsageError(f"--resume: {p} is not valid JSON ({err}); {advice}") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) and key in r for r in data):
            raise UsageError(f"--resume: {p} is not a JSON array of rows with {key!r}; {advice}")
        rows = data
    else:
        rows = []
        for n, line in enumerate(text.split("\n"), 1):  # JSON escapes newlines: only "\n" ends a row
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise UsageError(f"--resume: {p}, line {n}: not JSON ({err}); {advice}") from None
            if n == 1 and isinstance(row, dict) and set(row) == {"coreecho_run"}:
                record = _record(row["coreecho_run"], p)
                continue
            if not isinstance(row, dict) or key not in row:
                raise UsageError(f"--resume: {p}, line {n}: not a row with {key!r}; {advice}")
            rows.append(row)
    return record, rows


def _record(body: Any, path: Path) -> dict[str, Any]:
    """A journal's run record (JSON text or an object), checked to be one."""
    try:
        record = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError as err:
        raise UsageError(f"--resume: the run record on the first line of {path} is damaged ({err}); remove "
                         "--resume to start over") from None
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise UsageError(f"--resume: the first line of {path} is not a coreecho run record; remove --resume to "
                         "start over")
    return record


def _csv_records(text: str, path: Path) -> tuple[list[str] | None, list[list[str]]]:
    """The header and records of CSV text; a last record cut inside a quoted cell is dropped."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    records: list[list[str]] = []
    try:
        for rec in reader:
            if rec:  # a blank line
                records.append(rec)
    except csv.Error as err:
        if "unexpected end of data" not in str(err):  # damaged before the end: not a row cut by a kill
            raise UsageError(f"--resume: {path}, line {reader.line_num}: not CSV ({err}); remove --resume to "
                             "replace it") from None
    if not records or not any(records[0]):
        return None, []
    fields = records[0]
    for n, rec in enumerate(records[1:], 2):
        if len(rec) != len(fields):
            raise UsageError(f"--resume: {path}, record {n}: {len(rec)} cells under {len(fields)} columns; it was "
                             "not written by this command (or was edited); remove --resume to replace it")
    return fields, records[1:]


def write_rows(fh: TextIO, fmt: str, rows: Iterable[dict[str, Any]], fields: Sequence[str]) -> None:
    """All rows at once (the final output)."""
    if fmt == "csv":
        w = CsvRows(fh, fields)
        w.writeheader()
        w.writerows(rows)
    elif fmt == "json":
        items = [json.dumps(r, allow_nan=False) for r in rows]
        fh.write("[\n" + ",\n".join(items) + ("\n" if items else "") + "]\n")
    else:
        for r in rows:
            fh.write(json.dumps(r, allow_nan=False) + "\n")


def temporary_stem(target: str | os.PathLike) -> Path:
    """A fresh temporary name next to ``target`` (for writers that add their own suffix); finish with
    :func:`coreecho._atomic.install`."""
    return temporary_name(target)
