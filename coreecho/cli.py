"""The ``coreecho`` command line.

Subcommands: ``models`` (what can be loaded), ``convert`` (official ``.pth`` → coreecho folder), and, as the
library grows, ``predict``, ``embed``, ``demo``, ``train``, ``evaluate``. Each subcommand lives in a function
``_cmd_<name>`` registered in :data:`COMMANDS`; heavy imports happen inside them so ``coreecho --help``
stays instant.

Example:
    $ coreecho models
    $ coreecho convert best.pth --install coreecho-echonet
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from coreecho._version import __version__
from coreecho.errors import CoReEchoError

__all__ = ["main", "build_parser", "COMMANDS"]

#: name → (help, add_arguments, run). Other modules (see :func:`_load_plugins`) add their own entries.
COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_models(args: argparse.Namespace) -> int:
    import json

    from coreecho.hub import is_cached, list_models, model_info

    rows = []
    for name in list_models():
        src = model_info(name)
        where = {"hub-checkpoint": f"hf://{src.repo_id}/{src.filename}", "manual": src.url or "-",
                 "bundled": "inside the package"}[src.kind]
        rows.append({"name": name, "role": src.role, "source": where, "license": src.license,
                     "available_offline": is_cached(name), "description": src.description})
    if args.json:
        lines = [json.dumps(rows, indent=2)]
    else:
        lines = [f"{'name':<22} {'role':<8} {'offline':<8} {'license':<28} source"]
        for r in rows:
            lines.append(f"{r['name']:<22} {r['role']:<8} {('yes' if r['available_offline'] else 'no'):<8} "
                         f"{r['license']:<28} {r['source']}")
            lines.append(f"{'':<22} {r['description']}")
        lines.append("\nload any of them with coreecho.load_model(NAME) or --model NAME; folders, .pth files and "
                     "Hub repo ids work too. phantom-tiny runs offline now (synthetic training data, not for "
                     "clinical use).")
    return _print_lines(lines)


def _print_lines(lines: list[str]) -> int:
    """Print to stdout; a reader that stops early (``| head``) ends the command quietly instead of with a
    ``BrokenPipeError`` traceback."""
    import os

    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


def _add_convert(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="official CoReEcho checkpoint (best.pth)")
    p.add_argument("out_dir", nargs="?", help="folder to write config.json + model.safetensors + README.md")
    p.add_argument("--install", metavar="NAME", help="install into coreecho's cache under a registry name "
                   "(e.g. coreecho-echonet) so load_model(NAME) works offline")


def _run_convert(args: argparse.Namespace) -> int:
    from coreecho.hub import _installed_dir, convert_checkpoint, list_models

    if not args.out_dir and not args.install:
        print("coreecho convert: give OUT_DIR, --install NAME, or both", file=sys.stderr)
        return 2
    if args.install and args.install not in list_models():
        print(f"coreecho convert: --install takes a registered name ({', '.join(list_models())})", file=sys.stderr)
        return 2
    for target in filter(None, [args.out_dir, args.install and _installed_dir(args.install)]):
        out = convert_checkpoint(args.src, target)
        print(f"wrote {out}")
    return 0


COMMANDS["models"] = ("list registered models, their licences and whether they are available offline",
                      _add_models, _run_models)
COMMANDS["convert"] = ("convert an official CoReEcho checkpoint (.pth) into a coreecho folder",
                       _add_convert, _run_convert)


def _load_plugins() -> None:
    """Import the modules that add subcommands (kept out of this file to keep it small)."""
    import importlib

    for module in ("coreecho.cli_predict", "coreecho.cli_demo", "coreecho.cli_explain", "coreecho.cli_calibrate", "coreecho.train.cli",
                   "coreecho.train.finetune_cli"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    _load_plugins()
    parser = argparse.ArgumentParser(prog="coreecho", description="Ejection fraction and embeddings from "
                                     "echocardiogram videos (CoReEcho).")
    parser.add_argument("--version", action="version", version=f"coreecho {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add, _) in COMMANDS.items():
        add(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coreecho`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(COMMANDS[args.command][2](args) or 0)
    except CoReEchoError as err:
        print(f"coreecho {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"coreecho {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover - `python -m coreecho.cli`: use the importable module's registry
    from coreecho.cli import main as _main

    sys.exit(_main())
