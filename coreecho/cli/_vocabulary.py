"""One CLI vocabulary: library messages phrased with command-line flags, and each command's examples.

The library (loaders, pipeline, engine, training) phrases its errors and warnings for Python callers: it names an
argument as ``name=value`` (``pass resample_fps=True``), an :class:`~coreecho.errors.InputError` names the argument
it refuses as its source (``precision: expected one of ...``), and a list of settings names each on its own line
(``  size: checkpoint 64, now 112``). A command-line user has flags, not arguments, so the CLI boundary
(:func:`coreecho.cli.main`) rewrites every message it prints with :func:`cli_words`: each name that is an option of
the running command becomes that option (``--resample-fps``, ``--precision``, ``--size``). The table comes from the
command's own parser (:func:`register_parser`, called when ``coreecho.cli.build_parser`` builds it), so a new
option is translated without touching this module, and no message is special-cased.

Example:
    >>> p = argparse.ArgumentParser(prog="coreecho")
    >>> example = p.add_subparsers().add_parser("example")
    >>> _ = example.add_argument("--resample-fps", action="store_true"), example.add_argument("--device")
    >>> register_parser(p)
    >>> cli_words("12 fps is far (pass resample_fps=True to resample in time)", "example")
    '12 fps is far (add --resample-fps to resample in time)'
    >>> cli_words("device 'cuda' is absent; use device='cpu' (--device cpu)", "example")
    "device 'cuda' is absent; use --device cpu"
"""

from __future__ import annotations

import argparse
import re
from typing import NamedTuple

__all__ = ["Option", "options_of", "register_parser", "cli_words", "EXAMPLES", "LIBRARY_NAMES", "example_lines", "subparsers"]

#: Library argument names that a command's option sets under another name (``--workers`` is ``num_workers=`` in
#: :func:`coreecho.train.evaluation.evaluate` and :class:`~coreecho.train.transfer.TransferConfig`).
LIBRARY_NAMES = {"num_workers": "workers"}

#: One or two runnable examples per command (``coreecho``: the top-level help; ``train`` has one list per stage).
#: ``coreecho demo --output-dir demo`` writes ``demo/phantom_ef45_seed2024.avi``, the video the other examples
#: read, so they run as written offline.
EXAMPLES: dict[str, list[str]] = {
    "coreecho": ["coreecho demo", "coreecho predict coreecho-demo/ --model phantom-tiny --output ef.csv"],
    "models": ["coreecho models", "coreecho models --json"],
    "convert": ["coreecho convert best.pth --install coreecho-echonet",
                "coreecho convert best.pth coreecho-echonet-folder"],
    "predict": ["coreecho demo --output-dir demo --no-figure   # writes demo/phantom_ef45_seed2024.avi",
                "coreecho predict demo/ --model phantom-tiny --output ef.csv"],
    "embed": ["coreecho demo --output-dir demo --no-figure",
              "coreecho embed demo/ --model phantom-tiny --output emb.npz"],
    "demo": ["coreecho demo", "coreecho demo --ef 35 --seed 7 --output-dir demo"],
    "explain": ["coreecho demo --output-dir demo --no-figure",
                "coreecho explain demo/phantom_ef45_seed2024.avi --model phantom-tiny --output cam.gif "
                "--montage cam.png"],
    "calibrate": ["coreecho calibrate runs/stage2/model --data EchoNet-Dynamic --split val",
                  "coreecho calibrate phantom-tiny --data videos.csv --out my-calibrated-model"],
    "train": ["coreecho train stage1 --data EchoNet-Dynamic --out runs/stage1",
              "coreecho train stage2 --data EchoNet-Dynamic --out runs/stage2 --init runs/stage1"],
    "train stage1": ["coreecho train stage1 --data EchoNet-Dynamic --out runs/stage1",
                     "coreecho train stage1 --data EchoNet-Dynamic --out runs/cpu-smoke --preset micro --init none "
                     "--epochs 1 --limit-train 8 --limit-val 4"],
    "train stage2": ["coreecho train stage2 --data EchoNet-Dynamic --out runs/stage2 --init runs/stage1"],
    "evaluate": ["coreecho evaluate --data EchoNet-Dynamic --split test --model runs/stage2/model "
                 "--starts test_start_indexes.pkl --output per_video.csv"],
    "finetune": ["coreecho finetune --dataset camus --data CAMUS_public --mode mlp --output camus.json",
                 "coreecho finetune --dataset csv --data videos.csv --label-column ef --save-model my-model --folds 0"],
    "report": ["coreecho report a4c.avi --model phantom-tiny",
               "coreecho report study.dcm --model phantom-tiny --output reports/"],
    "env": ["coreecho env", "coreecho env --json > env.json"],
}


def example_lines(command: str) -> str:
    """The epilog of ``command``'s help: its :data:`EXAMPLES`, one per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[command])


class Option(NamedTuple):
    """A command-line option as the boundary names it: its flag and whether it takes a value."""

    flag: str
    takes_value: bool
    const: object = None  # what a flag that takes no value stores (True for store_true, False for store_false)


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``{"predict": parser, ..., "train stage1": parser, ...}``: every (nested) command parser of ``parser``."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse has no public walk over sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub in out.values():
                    continue
                prefix = parser.prog.split(" ", 1)[1] + " " if " " in parser.prog else ""
                out[prefix + name] = sub
                out.update(subparsers(sub))
    return out


#: command → its options by Python name, filled by :func:`register_parser` (``coreecho.cli.build_parser`` calls it).
_OPTIONS: dict[str, dict[str, Option]] = {}


def register_parser(parser: argparse.ArgumentParser) -> None:
    """Learn the options of every command of ``parser`` (the ``coreecho`` parser), for :func:`cli_words`."""
    parsers = subparsers(parser)
    for command in {name.split(" ", 1)[0] for name in parsers}:
        found: dict[str, Option] = {}
        for name, p in parsers.items():
            if name != command and not name.startswith(command + " "):
                continue
            for action in p._actions:
                longs = [s for s in action.option_strings if s.startswith("--")]
                if not longs or action.help == argparse.SUPPRESS or action.dest in found:
                    continue
                found[action.dest] = Option(longs[0], action.nargs != 0, getattr(action, "const", None))
                found.setdefault(longs[0][2:].replace("-", "_"), found[action.dest])
        for lib, dest in LIBRARY_NAMES.items():
            if dest in found:
                found.setdefault(lib, found[dest])
        _OPTIONS[command] = found


def options_of(command: str) -> dict[str, Option]:
    """Python name → :class:`Option` for every option of ``command`` (and its stages), plus :data:`LIBRARY_NAMES`;
    empty until the ``coreecho`` parser was built (:func:`register_parser`)."""
    return _OPTIONS.get(command, {})


_VALUE = r"(?:'[^']*'|\"[^\"]*\"|[^\s,;)\]]+)"
_ASSIGN = re.compile(r"(?<![\w.\-])(?P<verb>pass )?(?P<name>[a-z][a-z0-9_]*)=(?P<value>" + _VALUE + ")?")
_BOTH = re.compile(r"(--[a-z][a-z0-9-]*(?: [^\s(),;]+)?) \(\1\)")
_NAME = re.compile(r"(?<![\w.\-/`'\"])[a-z][a-z0-9]*_[a-z0-9_]+(?![\w(/\-=`'\"])(?!\.\w)")  # a bare batch_size
_FIELD_LINE = re.compile(r"^(?P<indent>\s+)(?P<name>[a-z][a-z0-9_]*):(?= )", re.MULTILINE)


def _assignment(match: re.Match[str], options: dict[str, Option]) -> str:
    opt = options.get(match["name"])
    if opt is None:
        return match[0]
    value = match["value"] or ""
    if not value:  # "choose one with target=": the option itself
        return f"{'add ' if match['verb'] else ''}{opt.flag}"
    if value[:1] in "'\"" and value[-1:] == value[:1]:
        value = value[1:-1]
    verb = "add " if match["verb"] else ""
    if not opt.takes_value:
        if value in ("True", "False") and (value == "True") == bool(opt.const):
            return f"{verb}{opt.flag}"
        return match[0]
    return f"{verb}{opt.flag} {value}"


def cli_words(text: str, command: str, source: str | None = None) -> str:
    """``text`` with every Python argument of the library that is an option of ``command`` named as that option.

    Four forms are rewritten: ``name=value`` (``--name value``; a yes/no flag as itself, ``pass`` as ``add``), a
    bare ``snake_case`` name (``a smaller batch_size``), indented ``  name: ...`` lines (a list of settings) and,
    when ``source`` is given (the source of an :class:`~coreecho.errors.InputError`: the argument it refuses), the
    leading ``source: ``. Names the command has no option for stay as they are (file names, columns).
    """
    options = options_of(command.split(" ", 1)[0])
    if not options:
        return text
    text = _ASSIGN.sub(lambda m: _assignment(m, options), text)
    text = _BOTH.sub(r"\1", text)  # a message written for both ("device='cpu' (--device cpu)"): said once
    text = _NAME.sub(lambda m: options[m[0]].flag if m[0] in options else m[0], text)
    text = _FIELD_LINE.sub(lambda m: m["indent"] + options[m["name"]].flag + ":" if m["name"] in options
                           else m[0], text)
    if source in options and text.startswith(f"{source}: "):
        text = options[source].flag + text[len(source):]
    return text
