"""``coreecho predict`` and ``coreecho embed``: batch inference over files, folders and globs.

Every input gets one output row; a bad input gets its message in the ``error`` column and the run goes on.
Rows are written and flushed as they are produced, so an interrupted run keeps everything already computed.
The exit code is 0 when every input succeeded and 1 when any failed.

Example:
    $ coreecho predict videos/ --recursive --model phantom-tiny --output ef.csv
    $ coreecho embed videos/*.avi --model phantom-tiny --output emb.npz
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import sys
from pathlib import Path
from typing import Any, Iterable, TextIO

from coreecho.cli import COMMANDS

__all__ = ["expand_inputs", "ROW_FIELDS", "RowWriter"]

#: Extensions picked up when a folder is given.
INPUT_EXTENSIONS = (".avi", ".mp4", ".mov", ".mkv", ".m4v", ".webm", ".gif", ".dcm", ".dicom", ".npy")
#: Columns of ``coreecho predict`` output, in order.
ROW_FIELDS = ("path", "ef", "ef_std", "n_clips", "clip_efs", "starts", "fps", "n_frames", "ef_low", "ef_high",
              "coverage", "shift_score", "is_shifted", "warnings", "error")


def expand_inputs(items: Iterable[str], recursive: bool = False) -> list[str]:
    """Files named, found in folders (known extensions) or matched by globs; unmatched names stay as given.

    A name that matches nothing is kept, so that it gets its own "no such file" row instead of vanishing.
    """
    out: list[str] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in INPUT_EXTENSIONS)
            out.extend(str(p) for p in found)
        elif any(ch in item for ch in "*?[") and not path.exists():
            matches = sorted(glob.glob(item, recursive=recursive))
            out.extend(matches if matches else [item])
        else:
            out.append(item)
    return out


def _row(pred: Any) -> dict[str, Any]:
    def num(x: Any) -> Any:
        return "" if x is None or (isinstance(x, float) and x != x) else round(float(x), 4)

    return {
        "path": pred.source, "ef": num(pred.ef), "ef_std": num(pred.ef_std), "ef_low": num(pred.ef_low),
        "ef_high": num(pred.ef_high), "coverage": num(pred.coverage), "shift_score": num(pred.shift_score),
        "is_shifted": "" if pred.is_shifted is None else int(pred.is_shifted), "n_clips": len(pred.clip_efs),
        "clip_efs": " ".join(f"{v:.4f}" for v in pred.clip_efs.reshape(-1)), "starts": " ".join(map(str, pred.starts)),
        "fps": num(pred.fps), "n_frames": pred.n_frames or "", "warnings": "; ".join(pred.warnings),
        "error": pred.error or "",
    }


class RowWriter:
    """Writes rows to CSV, JSON (an array) or JSON Lines as they come, flushing each one."""

    def __init__(self, output: str | None):
        self.path = output
        self.format = "csv"
        if output and output.endswith(".json"):
            self.format = "json"
        elif output and output.endswith(".jsonl"):
            self.format = "jsonl"
        self.fh: TextIO = open(output, "w", newline="") if output else sys.stdout
        self.count = 0
        self.csv = csv.DictWriter(self.fh, fieldnames=ROW_FIELDS) if self.format == "csv" else None
        if self.csv:
            self.csv.writeheader()
        elif self.format == "json":
            self.fh.write("[\n")

    def write(self, row: dict[str, Any]) -> None:
        if self.csv:
            self.csv.writerow(row)
        elif self.format == "json":
            self.fh.write((",\n" if self.count else "") + json.dumps(row))
        else:
            self.fh.write(json.dumps(row) + "\n")
        self.count += 1
        self.fh.flush()

    def close(self) -> None:
        if self.format == "json":
            self.fh.write("\n]\n")
        self.fh.flush()
        if self.fh is not sys.stdout:
            self.fh.close()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="video files (AVI/MP4/DICOM/.npy), folders or globs")
    p.add_argument("--model", default=None, help="registered name, folder, .pth or Hub repo id "
                   "(default: coreecho-echonet)")
    p.add_argument("--clips", default=None, help="clips per video: a number or 'all' (default: the model's)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=16, help="clips per forward pass (default 16)")
    p.add_argument("--recursive", action="store_true", help="descend into sub-folders")
    p.add_argument("--resample-fps", action="store_true", help="resample videos far from the training fps")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _clips(value: str | None) -> int | str | None:
    if value is None or value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"coreecho: --clips takes a number or 'all', got {value!r}") from None


def _predictions(args: argparse.Namespace, want_embeddings: bool):
    from coreecho.inference import get_model, run

    inputs = expand_inputs(args.paths, args.recursive)
    if not inputs:
        print("coreecho: no input files found", file=sys.stderr)
        return inputs, iter(())
    model = get_model(args.model, args.device)
    return inputs, run(inputs, model, clips=_clips(args.clips), batch_size=args.batch_size,
                       want_embeddings=want_embeddings, resample_fps=args.resample_fps, errors="nan",
                       progress=False if args.quiet else None)


def _add_predict(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--output", "-o", default=None, help="out.csv, out.json or out.jsonl (default: CSV on stdout)")


def _run_predict(args: argparse.Namespace) -> int:
    import warnings

    inputs, preds = _predictions(args, want_embeddings=False)
    if not inputs:
        return 1
    writer = RowWriter(args.output)
    failed = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # per-video warnings go to the 'warnings' column
            for pred in preds:
                failed += not pred.ok
                writer.write(_row(pred))
    finally:
        writer.close()
    if args.output:
        print(f"{writer.count} rows written to {args.output}; {failed} failed", file=sys.stderr)
    return 1 if failed else 0


def _add_embed(p: argparse.ArgumentParser) -> None:
    _common(p)
    p.add_argument("--output", "-o", required=True, help="emb.npz (paths, embeddings, ef, errors; plus emb.parquet "
                   "when pyarrow is installed) or emb.parquet")


def _save_embeddings(path: str, rows: list[Any], dim: int, model: str | None) -> list[Path]:
    """``.npz`` (and Parquet when pyarrow is installed, or only Parquet for a ``.parquet`` path)."""
    import numpy as np

    from coreecho.analysis.plots import save_embeddings

    emb = np.stack([r.embedding if r.ok else np.full(dim, np.nan, np.float32) for r in rows]) if rows else \
        np.zeros((0, dim), np.float32)
    return save_embeddings(path, [r.source for r in rows], emb, ef=np.array([r.ef for r in rows], np.float32),
                           errors=np.array([r.error or "" for r in rows], dtype=str),
                           model=model or "coreecho-echonet")


def _run_embed(args: argparse.Namespace) -> int:
    import warnings

    from coreecho.inference import get_model

    inputs, preds = _predictions(args, want_embeddings=True)
    if not inputs:
        return 1
    dim = get_model(args.model, args.device).embed_dim
    rows: list[Any] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for pred in preds:
                rows.append(pred)
                if pred.error:
                    print(f"{pred.source}: {pred.error}", file=sys.stderr)
    finally:
        files = _save_embeddings(args.output, rows, dim, args.model)
    failed = sum(not r.ok for r in rows)
    print(f"{len(rows)} embeddings ({dim}-d) written to {', '.join(map(str, files))}; {failed} failed",
          file=sys.stderr)
    return 1 if failed else 0


COMMANDS["predict"] = ("predict EF for videos (files, folders, globs); one row per input", _add_predict,
                       _run_predict)
COMMANDS["embed"] = ("write embeddings of videos to an .npz file", _add_embed, _run_embed)
