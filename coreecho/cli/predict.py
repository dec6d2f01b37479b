"""``coreecho predict`` and ``coreecho embed``: batch inference over files, folders and globs.

Every input gets one row; a bad input gets its message in the ``error`` column and the run goes on (exit code 1 when
any input failed, 0 when all succeeded). A non-finite model output is an error row; an EF outside 0–100 from an EF
model is a warning. Rows go to a journal next to the output as they finish (``OUT.partial``), and the output is
written at the end in input order, through a temporary file (see :mod:`coreecho.cli.output`): a killed run keeps
its finished rows and ``--resume`` computes only the rest.

Under ``torchrun`` each process takes every WORLD_SIZE-th remaining input (on ``cuda:LOCAL_RANK``, or the CPU),
writes its own journal, and rank 0 merges them into the one output after a barrier.

Length: about 490 lines, most of them :class:`_Batch`, which holds one run's whole life (inputs, resume, journals,
ranks, the final output) as one object by design; the file writing itself lives in :mod:`coreecho.cli.output`.

Example:
    $ coreecho predict videos/ --recursive --model phantom-tiny --output ef.csv
    $ coreecho predict videos/ --recursive --model phantom-tiny --output ef.csv --resume
    $ coreecho embed videos/*.avi --model phantom-tiny --output emb.npz
    $ torchrun --nproc-per-node 4 -m coreecho predict videos/ --recursive --output ef.csv
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import io
import math
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from coreecho.cli import _common as common
from coreecho.cli._common import UsageError
from coreecho.cli.output import (Journal, StreamWriter, check_output, find_partials, journal_format, output_format,
                                 partial_path, read_rows, read_table, replace_atomically, row_format, temporary_stem,
                                 write_rows)
from coreecho.cli.runrecord import check_settings, file_sha256, read_record, record_path, run_settings, write_record
from coreecho.cli.world import World, start_world
from coreecho._lists import join_values, normalize_list_cell
from coreecho.video.limits import READABLE_EXTENSIONS

__all__ = ["expand_inputs", "ROW_FIELDS", "EMBED_FIELDS", "INPUT_EXTENSIONS", "add_predict", "run_predict",
           "add_embed", "run_embed", "prediction_row"]

#: Extensions picked up when a folder is given: every extension the readers take (one list, in the library).
INPUT_EXTENSIONS = READABLE_EXTENSIONS
#: Columns of ``coreecho predict`` output, in order.
ROW_FIELDS = ("path", "ef", "ef_std", "n_clips", "clip_efs", "starts", "fps", "n_frames", "ef_low", "ef_high",
              "coverage", "shift_score", "is_shifted", "warnings", "error")
#: Fields of a ``coreecho embed`` journal row.
EMBED_FIELDS = ("path", "ef", "error", "embedding")


def expand_inputs(items: Iterable[str], recursive: bool = False) -> list[str]:
    """Files named, found in folders (known extensions) or matched by globs; unmatched names stay as given.

    A name that matches nothing is kept, so that it gets its own "no such file" row instead of vanishing; so is a
    broken link with a video extension found in a folder. Folder walks do not follow links to folders (no loops).
    """
    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found: list[Path] = []
            if recursive:
                for root, dirs, files in os.walk(path, followlinks=False):
                    dirs.sort()
                    found += [Path(root) / f for f in files]
            else:
                found = [p for p in path.iterdir() if not p.is_dir()]
            out.extend(str(p) for p in sorted(found) if p.suffix.lower() in INPUT_EXTENSIONS
                       and (p.is_file() or p.is_symlink()))
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(item, recursive=recursive))
            out.extend(matches if matches else [item])
        else:
            out.append(item)
    return out


# ------------------------------------------------------------------------------------------------ options
def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="video files (AVI/MP4/DICOM/.npy), folders or globs")
    common.add_model(p)
    common.add_clips(p)
    common.add_device(p)
    common.add_precision(p)
    common.add_batch_size(p)
    common.add_threads(p)
    common.add_workers(p)
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--resample-fps", action="store_true", help="resample videos far from the training fps")
    p.add_argument("--resume", action="store_true", help="keep the rows of an existing or interrupted OUTPUT and "
                   "compute only the inputs missing (or failed) there; only an output coreecho wrote with the same "
                   "model and settings (its run record, OUT.meta.json) is resumed")
    common.add_quiet(p)


def add_predict(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho predict``."""
    _common_options(p)
    common.add_output(p, text="out.csv, out.json or out.jsonl (default: CSV on stdout); folders are created")


def add_embed(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho embed``."""
    _common_options(p)
    common.add_output(p, required=True, text="emb.npz (paths, embeddings, ef, errors; plus emb.parquet when pyarrow "
                      "is installed) or emb.parquet; folders are created")


# ------------------------------------------------------------------------------------------------ rows
def _num(x: Any, text: bool) -> Any:
    import numpy as np

    if x is None:
        return "" if text else None
    if np.ndim(x) > 0:
        vals = [_num(v, text) for v in np.asarray(x).reshape(-1)]
        return " ".join(map(str, vals)) if text else vals
    x = float(x)
    if not math.isfinite(x):
        return "" if text else None
    return round(x, 4)


def prediction_row(pred: Any, fmt: str) -> dict[str, Any]:
    """One output row: strings for CSV, real lists and ``null`` for JSON."""
    import numpy as np

    text = fmt == "csv"
    clip = [round(float(v), 4) for v in np.asarray(pred.clip_efs, np.float64).reshape(-1)]
    ok = pred.ok
    row = {
        "path": pred.source, "ef": _num(pred.ef if ok else None, text), "ef_std": _num(pred.ef_std if ok else None, text),
        "n_clips": len(pred.clip_efs) if ok else (0 if not text else ""),
        "clip_efs": clip if ok else [], "starts": [int(s) for s in pred.starts],
        "fps": _num(pred.fps, text), "n_frames": int(pred.n_frames) if pred.n_frames else None,
        "ef_low": _num(pred.ef_low, text), "ef_high": _num(pred.ef_high, text), "coverage": _num(pred.coverage, text),
        "shift_score": _num(pred.shift_score, text),
        "is_shifted": None if pred.is_shifted is None else bool(pred.is_shifted),
        "warnings": list(pred.warnings), "error": pred.error,
    }
    if text:
        row.update({"clip_efs": join_values(clip, "{:.4f}"), "starts": join_values(row["starts"]),
                    "n_frames": row["n_frames"] or "", "is_shifted": "" if row["is_shifted"] is None else
                    int(row["is_shifted"]), "warnings": "; ".join(row["warnings"]), "error": row["error"] or ""})
    return row


def _failed(row: dict[str, Any]) -> bool:
    return bool(row.get("error"))


# ------------------------------------------------------------------------------------------------ the run
class _Batch:
    """One ``predict`` or ``embed`` run: inputs, output, earlier rows, journal, merge."""

    def __init__(self, args: argparse.Namespace, command: str):
        self.args, self.command = args, command
        self.embed = command == "embed"
        self.inputs = expand_inputs(args.paths, args.recursive)
        self.output: str | None = args.output
        self.done: dict[str, dict[str, Any]] = {}  # path → row of an earlier run
        self.order: list[str] = []  # paths of earlier rows, in their order
        self.fmt = "jsonl" if self.embed else row_format(self.output)
        self.dim: int | None = None
        self.meta: dict[str, Any] = {}
        self.hold = contextlib.ExitStack()  # the output's lock (rank 0), released by close()
        self.records: list[tuple[str, dict[str, Any]]] = []  # (file, settings) of every earlier output/journal
        self.previous: dict[str, str] = {}  # name → sha256 of the earlier output files this run replaces
        self.settings: dict[str, Any] = {}  # this run's settings (coreecho.cli.runrecord)

    def close(self) -> None:
        """Release the output's lock."""
        self.hold.close()

    # ---------------------------------------------------------------- setup (same on every rank)
    def targets(self) -> list[str]:
        if not self.embed:
            return [self.output] if self.output else []
        p = Path(self.output)
        stem = p.with_suffix("") if p.suffix.lower() in (".npz", ".parquet") else p
        if p.suffix.lower() == ".parquet":
            return [str(p)]
        return [str(stem) + ".npz", str(stem) + ".parquet"]

    def prepare(self, world: World) -> None:
        if not self.inputs:
            from coreecho.errors import InputError

            raise InputError(" ".join(self.args.paths), "no video files found (AVI/MP4/MOV/MKV/GIF, DICOM, .npy); "
                             "give files, folders (with --recursive for sub-folders) or globs")
        if self.output is None:
            if self.args.resume:
                raise UsageError("--resume needs --output (rows on stdout cannot be resumed)")
            if world.size > 1:
                raise UsageError("under torchrun give --output: the ranks' rows are merged into one file")
            return
        for target in [*self.targets(), str(record_path(self.output))]:
            check_output(target, self.inputs)
        if self.embed and Path(self.output).suffix.lower() not in ("", ".npz", ".parquet"):
            raise UsageError(f"--output {self.output}: the format comes from the extension; embeddings are written "
                             "as .npz or .parquet")
        if not self.embed:
            self.fmt = output_format(self.output)  # an unknown extension is refused before any work
        if world.main:  # one run per output: a second one refuses here, before reading or computing anything
            from coreecho._atomic import clean_stale_temporaries
            from coreecho._lock import output_lock

            self.hold.enter_context(output_lock(self.output, command=f"coreecho {self.command}"))
            for target in {Path(self.output), record_path(self.output), *map(Path, self.targets())}:
                clean_stale_temporaries(target.absolute().parent, target.name)
        partials = find_partials(self.output)
        if partials and not self.args.resume:
            raise UsageError(f"{partials[0]} holds the rows of an interrupted run; add --resume to finish it, or "
                             "delete it to start over")
        if self.args.resume:
            self._load_earlier(partials)

    def _load_earlier(self, partials: list[Path]) -> None:
        sources: list[tuple[Path, list[dict[str, Any]]]] = []
        final = next((Path(t) for t in self.targets() if Path(t).is_file()), None) if self.embed else \
            (Path(self.output) if Path(self.output).is_file() else None)
        if final is not None:  # only an output coreecho wrote, unchanged since (its run record says so)
            record = read_record(self.output, [final])
            self.records.append((str(final), record["settings"]))
            self.previous = {t.name: file_sha256(t) for t in map(Path, self.targets()) if t.is_file()}
            sources.append((final, self._read_embeddings(final) if self.embed else read_rows(final, self.fmt)))
        for part in partials:
            record, rows = read_table(part, journal_format(self.fmt))
            if record is None and not rows:  # killed before its first line was complete: nothing to keep
                continue
            if record is None:
                raise UsageError(f"--resume: {part} has no run record on its first line: it was written by coreecho "
                                 "before 0.3 or by another program. Delete it to start over")
            self.records.append((str(part), record["settings"]))
            sources.append((part, rows))
        for where, rows in sources:
            for row in rows:
                path = str(row["path"])
                if self.embed:
                    self._check_dim(row, where)
                if path not in self.done:
                    self.order.append(path)
                if self.fmt == "csv":  # lists written with spaces before this release: one separator in a file
                    row.update({k: normalize_list_cell(row[k]) for k in ("clip_efs", "starts") if k in row})
                if path not in self.done or not _failed(row):
                    self.done[path] = row

    def _read_embeddings(self, path: Path) -> list[dict[str, Any]]:
        from coreecho.analysis.plots import load_embeddings
        from coreecho.errors import InputError

        try:
            data = load_embeddings(path)
        except InputError as err:
            raise UsageError(f"--resume: {err}; remove --resume to replace it") from None
        self.meta = dict(data.metadata)
        efs = data.columns.get("ef")
        errors = data.columns.get("errors")
        rows = []
        for i, p in enumerate(data.paths):
            err = str(errors[i]) if errors is not None and str(errors[i]) else None
            rows.append({"path": p, "ef": None if efs is None else _num(efs[i], False), "error": err,
                         "embedding": None if err else [float(v) for v in data.embeddings[i]]})
        return rows

    def _check_dim(self, row: dict[str, Any], where: Path) -> None:
        emb = row.get("embedding")
        if emb is None:
            return
        if self.dim is None:
            self.dim = len(emb)
        elif len(emb) != self.dim:
            raise UsageError(f"--resume: {where} mixes {self.dim}-d and {len(emb)}-d embeddings; remove --resume")

    def settle(self, model: Any) -> None:
        """This run's settings; with ``--resume``, refuse earlier rows made with other ones (a readable diff)."""
        if self.output is None:
            return
        a = self.args
        self.settings = run_settings(model, command=self.command, clips=a.clips, resample_fps=a.resample_fps,
                                     precision=a.precision)
        check_settings(self.records, self.settings)

    # ---------------------------------------------------------------- compute
    def todo(self) -> list[str]:
        seen: set[str] = set()
        out = []
        for p in self.inputs:
            if p in seen or (p in self.done and not _failed(self.done[p])):
                continue
            seen.add(p)
            out.append(p)
        return out

    def row(self, pred: Any, task: str) -> dict[str, Any]:
        import numpy as np

        from coreecho.inference import check_result

        notes = check_result(pred, task, embedding=self.embed)  # run() applied it already; this returns its notes
        for note in notes:
            from coreecho.cli._common import say

            say(self.command, "warning", f"{pred.source}: {note}")
        if self.embed:
            return {"path": pred.source, "ef": None if not pred.ok else _num(pred.ef, False), "error": pred.error,
                    "embedding": None if not pred.ok else [float(v) for v in np.asarray(pred.embedding).reshape(-1)]}
        from coreecho.cli._vocabulary import cli_words

        row = prediction_row(pred, self.fmt)
        for key in ("warnings", "error"):  # the library's notes, in this command's words (--resample-fps)
            value = row.get(key)
            row[key] = [cli_words(v, self.command) for v in value] if isinstance(value, list) else \
                cli_words(value, self.command) if isinstance(value, str) else value
        return row

    def compute(self, model: Any, shard: list[str], world: World) -> tuple[int, int]:
        """Run ``shard`` through the model, writing each row as it finishes; (rows, failures)."""
        import warnings

        from coreecho.inference import run

        a = self.args
        task = getattr(model.config, "task", "ef")
        if self.embed:
            dim = int(model.embed_dim)
            if self.dim is not None and self.dim != dim:
                raise UsageError(f"--resume: {self.output} holds {self.dim}-d embeddings but this model gives "
                                 f"{dim}-d ones; it was written by another model. Remove --resume or use that model")
            self.dim = dim
        sink: Any
        if self.output is None:
            sink = StreamWriter(self.fmt, ROW_FIELDS)
        else:
            part = partial_path(self.output, world.rank, world.size)
            sink = Journal(part, journal_format(self.fmt), ROW_FIELDS if not self.embed else EMBED_FIELDS,
                           append=a.resume, record={"coreecho_run": 1, "settings": self.settings})
        count = failed = 0
        from coreecho.engine import EngineWarning

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # per-video notes go to the 'warnings' column
                warnings.simplefilter("always", EngineWarning)  # not about one video: shown
                preds = run(shard, model, clips=a.clips, batch_size=a.batch_size, want_embeddings=self.embed,
                            resample_fps=a.resample_fps, errors="nan", precision=a.precision, threads=a.threads,
                            workers=a.workers, progress=False if (a.quiet or not world.main) else None)
                for pred in preds:
                    row = self.row(pred, task)
                    sink.write(row)
                    count += 1
                    failed += _failed(row)
                    if self.embed and row["error"]:
                        from coreecho.cli._common import say

                        say(self.command, "error", row["error"] if row["error"].startswith(pred.source)
                             else f"{pred.source}: {row['error']}")
        except BaseException:
            sink.close()
            if self.output is not None and not a.resume and count == 0:
                part.unlink(missing_ok=True)  # failed before its first row: no stale journal that asks for --resume
            raise
        sink.close()
        return count, failed

    # ---------------------------------------------------------------- merge (rank 0)
    def merge(self, computed: int) -> tuple[int, int, list[str]]:
        """Write the output in input order from earlier rows and every journal; remove the journals.

        Returns (rows written, failed rows among the inputs, files written).
        """
        rows = dict(self.done)
        order = list(self.order)
        partials = find_partials(self.output)
        for part in partials:
            for row in read_rows(part, journal_format(self.fmt)):
                path = str(row["path"])
                if path not in rows:
                    order.append(path)
                if path not in rows or not _failed(row) or _failed(rows[path]):
                    rows[path] = row
        wanted = set(self.inputs)
        final = [rows[p] for p in self.inputs if p in rows]
        final += [rows[p] for p in dict.fromkeys(order) if p not in wanted]  # earlier rows of other inputs stay
        missing = [p for p in self.inputs if p not in rows]
        if missing:
            raise UsageError(f"{len(missing)} input(s) have no row after the run (first: {missing[0]}); the "
                             f"journals are kept: rerun with --resume")
        failed = sum(_failed(rows[p]) for p in dict.fromkeys(self.inputs))
        if self.embed:
            files = self._write_embeddings(final)
        else:  # the run record first (with the digest of what follows), then the output
            buf = io.StringIO()
            write_rows(buf, self.fmt, final, ROW_FIELDS)
            text = buf.getvalue()
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            write_record(self.output, self.settings, {Path(self.output).name: digest}, self.previous, len(final))
            files = [str(replace_atomically(self.output, lambda fh: fh.write(text)))]
        for part in partials:
            part.unlink(missing_ok=True)
        return len(final), failed, files

    def _write_embeddings(self, rows: list[dict[str, Any]]) -> list[str]:
        import numpy as np

        from coreecho.analysis.plots import save_embeddings

        dim = self.dim or 0
        emb = np.stack([np.asarray(r["embedding"], np.float32) if r.get("embedding") is not None and not r.get("error")
                        else np.full(dim, np.nan, np.float32) for r in rows]) if rows else np.zeros((0, dim), np.float32)
        ef = np.array([np.nan if r.get("ef") is None else float(r["ef"]) for r in rows], np.float32)
        errors = np.array([r.get("error") or "" for r in rows], dtype=str)
        target = Path(self.output)
        suffix = ".parquet" if target.suffix.lower() == ".parquet" else ".npz"
        tmp = temporary_stem(target)
        model = self.args.model or self.meta.get("model") or "coreecho-echonet"
        written = save_embeddings(str(tmp) + suffix, [r["path"] for r in rows], emb, ef=ef, errors=errors,
                                  model=str(model))
        stem = target.with_suffix("") if target.suffix.lower() in (".npz", ".parquet") else target
        out = []
        from coreecho._atomic import install

        write_record(self.output, self.settings, {Path(str(stem) + Path(f).suffix).name: file_sha256(f)
                                                  for f in written}, self.previous, len(rows))
        for f in written:
            final = Path(str(stem) + Path(f).suffix)
            install(f, final)  # the target's mode (a new file: the umask), flushed, renamed
            out.append(str(final))
        return out


def _run(args: argparse.Namespace, command: str) -> int:
    from coreecho.cli._common import say
    from coreecho.video.budget import env_max_bytes

    env_max_bytes()  # a garbage COREECHO_MAX_BYTES is refused before any output or journal exists
    batch = _Batch(args, command)
    world, device = start_world(args)
    try:
        error: BaseException | None = None
        model = None
        try:
            batch.prepare(world)
            from coreecho.inference import get_model

            model = get_model(args.model, device)
            if command == "predict":  # an EF is one regression output; embeddings are any model's
                from coreecho.models.task import check_ef_regression

                check_ef_regression(model.config, str(args.model or "the model"), "predict (EF)")
            batch.settle(model)  # --resume: earlier rows made with other settings are refused here
        except Exception as err:  # noqa: BLE001 - agreed across ranks, then raised to the CLI boundary
            error = err
        world.agree(error)
        todo = batch.todo()
        shard = todo[world.rank::world.size]
        world.barrier()  # every rank has read the earlier rows before any journal is opened
        computed, failed_now = batch.compute(model, shard, world)
        counts = world.gather((computed, failed_now))
        world.barrier()  # every journal is closed
        code = 0
        if batch.output is None:
            code = 1 if failed_now else 0
            if failed_now:
                say(command, "error", f"{failed_now} of {computed} inputs failed (see their 'error' column)")
        elif world.main:
            total_computed = sum(c for c, _ in counts)
            n, failed, files = batch.merge(total_computed)
            kept = len([p for p in dict.fromkeys(batch.inputs) if p in batch.done and not _failed(batch.done[p])])
            what = f"{n} rows" if not command == "embed" else f"{n} embeddings ({batch.dim}-d)"
            print(f"{what} written to {', '.join(files)} ({total_computed} computed now"
                  f"{f', {kept} kept from an earlier run' if args.resume else ''}); {failed} failed",
                  file=sys.stderr, flush=True)
            code = 1 if failed else 0
        codes = world.gather(code)
        return max(codes)
    finally:
        batch.close()
        world.close()


def run_predict(args: argparse.Namespace) -> int:
    """Run ``coreecho predict``."""
    return _run(args, "predict")


def run_embed(args: argparse.Namespace) -> int:
    """Run ``coreecho embed``."""
    return _run(args, "embed")


