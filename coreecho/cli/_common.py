"""Shared option parsers of the ``coreecho`` commands, and the usage error of the error boundary.

Every command that takes a model, a device, a precision, a clip count, threads, workers, a batch size or an
output file takes it through one of the ``add_*`` functions here, so that ``--clips`` (for example) means the
same thing, with the same bounds, everywhere. Bounds are checked when the command line is parsed: a bad value is
a one-line usage error (exit 2) before any model is loaded.

Example:
    >>> import argparse
    >>> p = argparse.ArgumentParser()
    >>> add_clips(p)
    >>> p.parse_args(["--clips", "5"]).clips
    5
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from coreecho.errors import CoReEchoError, InputError
from coreecho.validate import LIMITS, check_batch_size, check_clips, check_device, check_threads, check_workers

__all__ = ["say", "quiet_stdout", "print_lines", "rank_prefix", "UsageError", "bounded_int", "bounded_float", "clips_value", "device_value", "add_model", "add_device",
           "add_precision", "add_clips", "add_threads", "add_workers", "add_batch_size", "add_output", "add_debug",
           "add_quiet", "add_deprecated_alias", "workers_value", "LIMITS", "PRECISIONS", "DEVICE_HELP",
           "MODEL_MEANING", "precision_help", "workers_help",
           "PRECISION_MEANING", "WORKERS_MEANING", "QUIET_HELP"]

# LIMITS (upper bounds of numeric options) and the checks of the run settings are the library's
# (coreecho.validate): the Python API checks the same values the same way.


def library_check(check: Callable[[int], object]) -> Callable[[str], object]:
    """An argparse ``type`` for an integer option checked by one of :mod:`coreecho.validate`'s functions."""

    def parse(text: str) -> object:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        try:
            return check(value)
        except InputError as err:
            raise argparse.ArgumentTypeError(str(err.problem)) from None

    parse.__name__ = "integer"
    return parse


class UsageError(CoReEchoError):
    """The command cannot run as given (a bad option value, an output that would destroy an input, ...): exit 2."""


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for an integer in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            span = f"{low}..{high}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected an integer in {span}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def bounded_float(low: float, high: float) -> Callable[[str], float]:
    """An argparse ``type`` for a finite float in ``[low, high]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:  # also refuses nan
            raise argparse.ArgumentTypeError(f"expected a number in {low:g}..{high:g}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


def clips_value(text: str) -> int | str:
    """``--clips``: a positive integer (evenly spaced clips, at most ``LIMITS['clips']``), ``all`` or ``every``."""
    if text in ("all", "every"):
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, 'all' or 'every', got {text!r}") from None
    try:
        return check_clips(value)
    except InputError:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..{LIMITS['clips']} (or 'all'), got {value}") from None


def device_value(text: str) -> str:
    """``--device``: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto`` (whether it exists is checked later)."""
    try:
        return check_device(text)
    except InputError:
        raise argparse.ArgumentTypeError(f"expected cpu, cuda, cuda:N, mps or auto, got {text!r}") from None


#: What ``--model`` means, the start of its help in every command.
MODEL_MEANING = "registered name (coreecho models), model folder, official .pth or Hub repo id"


def add_model(p: argparse.ArgumentParser, default: str | None = None, required: bool = False,
              text: str | None = None) -> None:
    """``--model``: a registered name, a folder, an official .pth or a Hub repo id."""
    shown = "none: required" if required else (default or "coreecho-echonet")
    p.add_argument("--model", default=default, required=required, help=text or f"{MODEL_MEANING} (default: {shown})")


#: The help of ``--device`` in every command.
DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (default: cuda when available; under torchrun cuda:LOCAL_RANK)"


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device``."""
    p.add_argument("--device", type=device_value, default=None, help=DEVICE_HELP)


#: Values of ``--precision`` (as :data:`coreecho.precision.PRECISIONS`, repeated so that ``--help`` needs no torch).
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: What ``--precision`` means, the start of its help in every command (the rule of ``auto``: docs/cli.md).
PRECISION_MEANING = "arithmetic of the forward passes: auto, fp32, bf16 or fp16"
#: What ``--workers`` means, the start of its help in every command.
WORKERS_MEANING = "loader processes reading and decoding videos ahead of the model, 0: none"
#: The help of ``--quiet`` in every command that runs long work.
QUIET_HELP = "no progress bars or progress lines (default: shown; bars only when stderr is a terminal)"


def precision_help(training: bool = False) -> str:
    """The help of ``--precision``: :data:`PRECISION_MEANING` and what ``auto`` picks (for inference or training)."""
    cpu = "fp32 on a CPU (training recipes were validated in fp32)" if training else \
        "on a CPU bf16 where it is native (AVX512-BF16/AMX) and the model is large, else fp32"
    return f"{PRECISION_MEANING} (default: auto = bf16 on a GPU with bf16, else fp16; {cpu}; docs/cli.md, Precision)"


def workers_help(default: str = "one per core up to 4; fewer for a large model on a CPU") -> str:
    """The help of ``--workers``: :data:`WORKERS_MEANING` and the command's default."""
    return f"{WORKERS_MEANING} (default: {default})"


def add_precision(p: argparse.ArgumentParser, default: str | None = "auto", training: bool = False) -> None:
    """``--precision``: ``auto`` by default everywhere (``None`` only where a config file may supply it)."""
    p.add_argument("--precision", default=default, choices=PRECISIONS, help=precision_help(training))


def add_clips(p: argparse.ArgumentParser, every: bool = True) -> None:
    """``--clips``: one parser for every command."""
    p.add_argument("--clips", type=clips_value, default=None, metavar="N|all" + ("|every" if every else ""),
                   help=f"clips per video: an integer 1..{LIMITS['clips']} (evenly spaced), 'all' (non-overlapping)"
                        + (" or 'every' (every start)" if every else "")
                        + " (default: the model's number of test clips)")


def add_threads(p: argparse.ArgumentParser) -> None:
    """``--threads``."""
    p.add_argument("--threads", type=library_check(check_threads), default=None,
                   help="torch CPU threads (default: torch's)")


def workers_value(text: str) -> int:
    """``--workers``: an integer in ``0..LIMITS['workers']``."""
    return library_check(check_workers)(text)  # type: ignore[return-value]


def add_workers(p: argparse.ArgumentParser, dest: str = "workers", default: str | None = None) -> None:
    """``--workers`` (``None`` by default: the command's policy, ``default`` says which)."""
    p.add_argument("--workers", dest=dest, type=workers_value, default=None,
                   help=workers_help(default) if default else workers_help())


def add_quiet(p: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars (they are shown by default when stderr is a terminal)."""
    p.add_argument("--quiet", action="store_true", default=False, help=QUIET_HELP)


class _DeprecatedAlias(argparse.Action):
    """An old option spelling: hidden from the help, does what the new one does, and says so on stderr."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", store: object = None,
                 **kwargs: object) -> None:
        self.new, self.store = new, store
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, self.store if self.nargs == 0 else values)
        note = f"{option_string} is deprecated and will be removed in the next release; use {self.new}"
        notes = list(getattr(namespace, "deprecated_options", None) or [])
        setattr(namespace, "deprecated_options", notes + [note])


def add_deprecated_alias(p: argparse.ArgumentParser, old: str, new: str, dest: str, *, store: object = None,
                         **kwargs: object) -> None:
    """``old`` as a hidden, deprecated spelling of ``new`` (same ``dest``); using it prints a warning.

    ``store``: for an old flag that takes no value, the value it sets (else pass ``type=`` like the new option).
    """
    nargs = 0 if store is not None else None
    p.add_argument(old, dest=dest, action=_DeprecatedAlias, new=new, store=store, nargs=nargs,
                   default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kwargs)


def add_batch_size(p: argparse.ArgumentParser, default: int | None = None) -> None:
    """``--batch-size`` (clips per forward pass)."""
    p.add_argument("--batch-size", type=library_check(check_batch_size), default=default,
                   help="clips per forward pass (default: " + (str(default) if default else
                                                               "by activation size or free GPU memory") + ")")


def add_output(p: argparse.ArgumentParser, required: bool = False, text: str = "output file") -> None:
    """``--output`` / ``-o``."""
    p.add_argument("--output", "-o", required=required, default=None, help=text)


def add_debug(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``--debug``: show the traceback of an error (the top-level flag and each command's)."""
    p.add_argument("--debug", action="store_true", default=False if top else argparse.SUPPRESS,
                   help="show the full traceback of an error")


def option_error(option: str, problem: str) -> UsageError:
    """A :class:`UsageError` that names the option."""
    return UsageError(f"{option}: {problem}")


def rank_prefix() -> str:
    """``"[rank R] "`` under a multi-process launch (``WORLD_SIZE`` > 1), else ``""``."""
    world = (os.environ.get("WORLD_SIZE") or "").strip()
    return f"[rank {os.environ.get('RANK', '0')}] " if world.isdigit() and int(world) > 1 else ""


def say(command: str, kind: str, message: str, details: list[str] | tuple[str, ...] = ()) -> None:
    """One line on stderr: ``coreecho COMMAND: KIND: message`` (newlines folded; a closed stderr is ignored).

    The library's Python argument names become the command's flags (:func:`coreecho.cli._vocabulary.cli_words`).
    ``details``: further lines, each printed on its own indented line (a refusal that lists several settings).
    """
    from coreecho.cli._vocabulary import cli_words

    text = " ".join(cli_words(str(message), command).split("\n"))
    if details:
        text += "".join("\n  " + " ".join(cli_words(str(line), command).split("\n")) for line in details)
    try:
        print(f"coreecho {command}: {kind}: {rank_prefix()}{text}", file=sys.stderr, flush=True)
    except (BrokenPipeError, ValueError):  # stderr gone: nothing left to tell
        pass


def quiet_stdout() -> None:
    """After a reader closed our stdout (``| head``): point it at devnull, so the flush at exit cannot fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def print_lines(lines: list[str]) -> int:
    """Print to stdout; a reader that stops early (``| head``) ends the command quietly. Returns exit code 0."""
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        quiet_stdout()
    return 0
