"""The ``coreecho`` command line: one module per command group, one command table, one error boundary.

Commands (the fixed table :data:`COMMANDS`; each entry names the module that implements it, imported only when the
command runs or its options are built, so ``coreecho --help`` stays instant):

=============  ===================================  ==========================================================
command        module                               what it does
=============  ===================================  ==========================================================
models         :mod:`coreecho.cli.models`           registered models, licences, offline availability
convert        :mod:`coreecho.cli.models`           official ``best.pth`` → coreecho folder / cache install
predict        :mod:`coreecho.cli.predict`          EF of videos, one row per input (CSV/JSON/JSONL)
embed          :mod:`coreecho.cli.predict`          embeddings of videos (.npz / Parquet)
demo           :mod:`coreecho.cli.demo`             offline demo on a phantom echo
explain        :mod:`coreecho.cli.explain`          Grad-CAM overlay and montage
calibrate      :mod:`coreecho.cli.calibrate`        conformal EF interval and shift detector
train          :mod:`coreecho.cli.train`            CoReEcho stage 1 / stage 2
evaluate       :mod:`coreecho.cli.train`            MAE/RMSE/R² with bootstrap CIs on a dataset split
finetune       :mod:`coreecho.cli.finetune`         probing / fine-tuning on CAMUS, HMC-QU or a CSV
report         :mod:`coreecho.cli.report`           one-page PNG + HTML report of one video
env            :mod:`coreecho.cli.env`              versions, devices, caches, models (offline)
=============  ===================================  ==========================================================

The error boundary (:func:`main`): an anticipated failure prints one line,
``coreecho <command>: error: <what, where, what to do>``, and exits 2 when the command cannot run as given (bad
option values, an output that is one of the inputs, a device this machine lacks) and 1 when the inputs, the weights
or the output failed (for batch commands: when some inputs failed; their rows say why). ``--debug`` (before or after
the command) also prints the traceback. Warnings print as one line, ``coreecho <command>: warning: ...``.

Example:
    $ coreecho models
    $ coreecho predict videos/ --recursive --model phantom-tiny -o ef.csv
    $ torchrun --nproc-per-node 4 -m coreecho predict videos/ -o ef.csv --resume
"""

from __future__ import annotations

import argparse
import importlib
import os
import warnings
from typing import Any, Callable, Sequence

from coreecho._oserrors import os_error_hint
from coreecho._version import __version__
from coreecho.cli._common import UsageError, add_debug, quiet_stdout, say
from coreecho.errors import CoReEchoError, DeviceError

__all__ = ["main", "build_parser", "COMMANDS", "UsageError", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

#: name → (module, function adding the options, function running the command, help). Fixed: nothing registers
#: itself on import.
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "models": ("coreecho.cli.models", "add_models", "run_models",
               "list registered models, their licences and whether they are available offline"),
    "convert": ("coreecho.cli.models", "add_convert", "run_convert",
                "convert an official CoReEcho checkpoint (.pth) into a coreecho folder"),
    "predict": ("coreecho.cli.predict", "add_predict", "run_predict",
                "predict EF for videos (files, folders, globs); one row per input"),
    "embed": ("coreecho.cli.predict", "add_embed", "run_embed", "write embeddings of videos to an .npz file"),
    "demo": ("coreecho.cli.demo", "add_demo", "run_demo_command",
             "offline demo: a phantom echo with known EF, predicted by the bundled phantom-tiny model"),
    "explain": ("coreecho.cli.explain", "add_explain", "run_explain",
                "Grad-CAM heatmap of one clip: animated overlay (GIF/MP4) and PNG montage"),
    "calibrate": ("coreecho.cli.calibrate", "add_calibrate", "run_calibrate",
                  "fit a conformal EF interval and a shift detector on held-out labelled videos; saved with the model"),
    "train": ("coreecho.cli.train", "add_train_arguments", "run_train",
              "train CoReEcho: stage1 (Rank-N-Contrast encoder) or stage2 (EF head on the frozen encoder)"),
    "evaluate": ("coreecho.cli.train", "add_evaluate_arguments", "run_evaluate",
                 "evaluate an EF model on a dataset split: MAE, RMSE, R2 with bootstrap CIs, per-video CSV"),
    "finetune": ("coreecho.cli.finetune", "add_finetune", "run_finetune",
                 "transfer the encoder: linear/MLP probing or full fine-tuning, cross-validated on CAMUS, HMC-QU or "
                 "a CSV of videos"),
    "report": ("coreecho.cli.report", "add_report", "run_report",
               "one-page report of a video: PNG figure and HTML page (EF per clip, interval, shift, Grad-CAM)"),
    "env": ("coreecho.cli.env", "add_env", "run_env",
            "print versions, torch build, CPU features, devices, caches and installed models (for bug reports)"),
}


def _function(command: str, which: int) -> Callable[..., Any]:
    module, *names, _ = COMMANDS[command]
    return getattr(importlib.import_module(module), names[which])


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command of :data:`COMMANDS`."""
    from coreecho.cli._vocabulary import example_lines, register_parser

    parser = argparse.ArgumentParser(prog="coreecho", description="Ejection fraction and embeddings from "
                                     "echocardiogram videos (CoReEcho).", epilog=example_lines("coreecho"),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"coreecho {__version__}")
    add_debug(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, _add, _run, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _function(name, 0)(p)
        p.epilog = example_lines(name)  # one table of examples: coreecho.cli._vocabulary.EXAMPLES
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        add_debug(p)
    register_parser(parser)  # library messages are then phrased with these options (coreecho.cli._vocabulary)
    return parser


def describe_os_error(err: OSError) -> str:
    """An :class:`OSError` as one line that names the file and says what to do (advice: :func:`os_error_hint`)."""
    where = err.filename if err.filename is not None else "a file"
    what = err.strerror or str(err)
    hint = os_error_hint(err.errno)
    return f"{where}: {what}" + (f"; {hint}" if hint else "")


_WORKER_TRACEBACK = "Original Traceback (most recent call last):"
_WORKER_KILLED = ("DataLoader worker", "exited unexpectedly", "is killed by signal")
_DIST_FAILED = ("DistBackendError", "DistNetworkError", "DistStoreError", "Connection closed by peer",
                "Connection reset by peer", "NCCL error", "Gloo")


def worker_message(text: str) -> str | None:
    """The original one-line message of an exception that a data loader worker raised (torch re-raises it with
    the worker's whole traceback in its text), e.g. ``"VideoReadError: v.avi: cannot decode frame 3"``; ``None``
    when ``text`` is not such a message."""
    if _WORKER_TRACEBACK not in text:
        return None
    lines = [line.strip() for line in text.split(_WORKER_TRACEBACK, 1)[1].splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if not line.startswith(("File ", "^", "~"))), "")
    name, sep, message = last.partition(": ")
    if sep and " " not in name:  # "coreecho.errors.VideoReadError: v.avi: ..." -> "VideoReadError: v.avi: ..."
        last = f"{name.rsplit('.', 1)[-1]}: {message}"
    return f"a data loader worker failed: {last}" if last else None


def describe_failure(err: BaseException) -> str | None:
    """One readable line for a failure of another component (a killed or failing loader worker, a distributed
    peer that died, a write that a library's error hides); ``None`` when it is none of those (a real bug)."""
    text = str(err)
    from_worker = worker_message(text)
    if from_worker is not None:
        return from_worker
    if isinstance(err, RuntimeError) and all(m in text for m in _WORKER_KILLED[:1]) and any(
            m in text for m in _WORKER_KILLED[1:]):
        first = text.strip().splitlines()[0][:200]
        return (f"a data loader worker process died ({first}); the machine may be out of memory or the worker was "
                "killed: rerun with fewer --workers (or --workers 0 to see the failing video)")
    if type(err).__name__ in _DIST_FAILED or (isinstance(err, RuntimeError) and any(m in text for m in _DIST_FAILED)):
        first = text.strip().splitlines()[0][:200] if text.strip() else type(err).__name__
        return (f"another training process failed or was killed ({type(err).__name__}: {first}); see the first "
                "process's error above, fix it and rerun with --resume")
    if type(err).__name__ == "OutOfMemoryError":
        return "the GPU is out of memory; use a smaller --batch-size (or --cached-batch / --grad-checkpointing)"
    from coreecho._oserrors import as_output_error

    typed = as_output_error(err, getattr(err, "filename", None) or "an output file")
    return str(typed) if typed is not None else None


def _phrased(err: CoReEchoError, command: str) -> tuple[str, list[str]]:
    """The headline and the detail lines of an error, in the command's words (flags, not Python arguments)."""
    from coreecho.cli._vocabulary import cli_words

    text = str(err)
    details = [str(line) for line in getattr(err, "details", None) or ()]
    if details:  # a refusal written as a headline and lines (a resume whose settings differ)
        text = text.split("\n", 1)[0]
    return cli_words(text, command, getattr(err, "source", None)), details  # an InputError's source: the argument


def _refuse_unavailable_model(args: argparse.Namespace) -> None:
    """Offline and the ``--model`` (default ``coreecho-echonet``) a published model not installed: fail now, with the
    library's message and the manual route, before the command imports torch (seconds) to find that out."""
    if not hasattr(args, "model"):
        return
    from coreecho.hub.registry import offline_refusal

    why = offline_refusal(args.model)
    if why is not None:
        from coreecho.errors import ModelNotFoundError

        raise ModelNotFoundError(why)


def _run(command: str, args: argparse.Namespace) -> int:
    debug = bool(getattr(args, "debug", False)) or os.environ.get("COREECHO_DEBUG") == "1"

    def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
        say(command, "warning", str(message))

    for note in getattr(args, "deprecated_options", None) or []:
        say(command, "warning", note)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show
            _refuse_unavailable_model(args)
            return int(_function(command, 1)(args) or 0)
    except BaseException as err:  # noqa: BLE001 - the one boundary: classify, print one line, pick the exit code
        if isinstance(err, SystemExit):
            raise
        if isinstance(err, KeyboardInterrupt):
            say(command, "interrupted", "stopped by the user; rows already written are kept (rerun with --resume "
                 "where the command has it)")
            return EXIT_INTERRUPTED
        if debug:
            import traceback

            traceback.print_exc()
        if isinstance(err, (UsageError, DeviceError)):
            say(command, "error", *_phrased(err, command))
            return EXIT_USAGE
        if isinstance(err, CoReEchoError):
            from_worker = worker_message(str(err))
            say(command, "error", *((from_worker, []) if from_worker else _phrased(err, command)))
            return EXIT_FAILED
        if isinstance(err, BrokenPipeError):
            quiet_stdout()
            return EXIT_OK
        if isinstance(err, OSError):
            say(command, "error", describe_os_error(err))
            return EXIT_FAILED
        if isinstance(err, MemoryError):
            say(command, "error", "out of memory; use fewer --clips, a smaller --batch-size, or fewer --workers")
            return EXIT_FAILED
        described = describe_failure(err)
        if described is not None:
            say(command, "error", described)
            return EXIT_FAILED
        say(command, "error", f"unexpected {type(err).__name__}: {err}. This is a bug in coreecho; rerun with "
             "--debug for the traceback and report it")
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coreecho`` console script (and of ``python -m coreecho``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    return _run(args.command, args)
