"""One CLI vocabulary: shared options agree across every command, every help ends with examples that parse, and
no help or message a CLI user sees names a Python argument instead of a flag."""

from __future__ import annotations

import argparse
import csv
import re
import shlex

import pytest

from coreecho.cli import _common as common
from coreecho.cli import build_parser, main
from coreecho.cli._vocabulary import EXAMPLES, cli_words, subparsers

#: Options that mean the same thing everywhere: the start of their help (their meaning) and the values to probe.
SHARED = {
    "--device": (common.DEVICE_HELP, ["cpu", "cuda", "cuda:1", "mps", "auto", "gpu", "cuda:x"]),
    "--precision": (common.PRECISION_MEANING, ["auto", "fp32", "bf16", "fp16", "fp8", "AUTO"]),
    "--workers": (common.WORKERS_MEANING, ["0", "1", "4", "64", "65", "-1", "two"]),
    "--threads": ("torch CPU threads", ["1", "8", "0", "x"]),
    "--clips": ("clips per video", ["1", "3", "all", "0", "x"]),
    "--quiet": (common.QUIET_HELP, []),
    "--model": (common.MODEL_MEANING, []),
    "--debug": ("show the full traceback of an error", []),
}
#: Options whose argparse default may differ from the others', and why.
DEFAULT_EXCEPTIONS = {
    ("demo", "--model"): "the demo's model is the bundled phantom-tiny",
    ("evaluate", "--model"): "required: a metric of an unnamed model would be ambiguous",
    ("train stage1", "--quiet"): "None: --config may set it (TrainConfig.progress)",
    ("train stage2", "--quiet"): "None: --config may set it (TrainConfig.progress)",
    ("train stage1", "--precision"): "None: --config may set it; TrainConfig.precision is 'auto'",
    ("train stage2", "--precision"): "None: --config may set it; TrainConfig.precision is 'auto'",
}
#: Option names used by several commands for things that differ by nature (documented in docs/cli.md).
DIFFERENT = {
    "--batch-size": "inference: clips per forward pass; training: videos per optimiser step",
    "--output": "the file each command writes (its help says which); -o everywhere",
    "--out": "a folder: a training run or a calibrated model",
    "--data": "the dataset each command reads",
    "--seed": "what is drawn differs (phantom, clips and bootstrap, folds, calibration split); always an integer",
    "--limit": "the first N videos of the command's dataset",
    "--json": "print JSON instead of text",
    "--resume": "continue an interrupted output (predict/embed) or training run",
    "--overwrite": "replace the command's existing result",
    "--epochs": "training passes of the command's trainer",
    "--lr": "encoder learning rate of the command's trainer",
    "--head-lr": "head learning rate of the command's trainer",
    "--weight-decay": "encoder weight decay of the command's trainer",
    "--frames": "training/fine-tuning: frames per clip; explain: frames in the montage",
    "--stride": "frames step of the command's clips",
    "--stage": "Grad-CAM stage (explain, report); default differs: report picks one that localises",
    "--split": "the dataset split the command reads",
    "--init": "the stage's starting weights",
    "--pad": "training augmentation", "--pad-style": "training augmentation",
    "--val-clips": "validation clips", "--head-weight-decay": "head weight decay", "--lr-decay": "lr factor",
    "--save-every-steps": "checkpoints", "--limit-train": "training videos", "--limit-val": "validation videos",
    "--head-args": "head keyword arguments", "--lr-decay-epochs": "decay epochs", "--reinit-head": "stage 2",
    "--config": "training config file", "--no-tensorboard": "logging",
    "--resample-fps": "predict/embed: resample videos far from the training fps",
    "--recursive": "predict/embed: descend into sub-folders",
    "--preset": "encoder preset", "--architecture": "encoder", "--size": "input side", "--temperature": "loss",
    "--loss-chunk-size": "loss memory", "--micro-batch": "gradient caching",
    "--encoder-args": "encoder", "--cached-batch": "memory", "--grad-checkpointing": "memory", "--sync-bn": "DDP",
}
#: Commands that run long work: each has --quiet.
LONG = ("predict", "embed", "evaluate", "calibrate", "finetune", "train stage1", "train stage2")


def _leaves() -> dict[str, argparse.ArgumentParser]:
    """Every command parser that takes options (``train`` by its stages)."""
    all_parsers = subparsers(build_parser())
    return {name: p for name, p in all_parsers.items()
            if not any(other.startswith(name + " ") for other in all_parsers)}


def _options(p: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in p._actions for s in a.option_strings if s.startswith("--") and a.help != argparse.SUPPRESS}


def _accepts(action: argparse.Action, text: str) -> bool:
    if action.choices is not None:
        return text in action.choices
    try:
        (action.type or str)(text)
    except (argparse.ArgumentTypeError, ValueError, TypeError):
        return False
    return True


def _train_default(flag: str):
    from coreecho.train.config import TrainConfig

    return {"--precision": TrainConfig().precision, "--quiet": not TrainConfig().progress}.get(flag)


def test_shared_options_mean_the_same_everywhere():
    leaves = _leaves()
    for flag, (meaning, probes) in SHARED.items():
        users = {name: _options(p)[flag] for name, p in leaves.items() if flag in _options(p)}
        assert len(users) >= 2, flag
        accepted = {name: tuple(_accepts(a, v) for v in probes) for name, a in users.items()}
        assert len(set(accepted.values())) == 1, (flag, accepted)
        assert len({a.nargs for a in users.values()}) == 1, flag
        for name, action in users.items():
            assert action.help.startswith(meaning), (flag, name, action.help)
        defaults = {name: a.default for name, a in users.items() if (name, flag) not in DEFAULT_EXCEPTIONS}
        assert len(set(map(repr, defaults.values()))) == 1, (flag, defaults)
    assert {_options(p)["--precision"].default for n, p in leaves.items() if "--precision" in _options(p)
            and not n.startswith("train")} == {"auto"}
    assert _train_default("--precision") == "auto"  # train's None means TrainConfig's, which is auto too


@pytest.mark.parametrize("command", LONG)
def test_long_commands_have_quiet(command):
    action = _options(_leaves()[command])["--quiet"]
    assert action.nargs == 0 and action.help == common.QUIET_HELP


def test_every_repeated_option_is_classified():
    seen: dict[str, int] = {}
    for p in _leaves().values():
        for flag in _options(p):
            seen[flag] = seen.get(flag, 0) + 1
    repeated = {f for f, n in seen.items() if n > 1} - {"--help"}
    unclassified = repeated - set(SHARED) - set(DIFFERENT)
    assert not unclassified, f"say in SHARED or DIFFERENT what these mean: {sorted(unclassified)}"


def test_old_spellings_still_work_and_say_they_are_deprecated(capsys, tmp_path):
    parser = build_parser()
    args = parser.parse_args(["finetune", "--dataset", "csv", "--data", "x.csv", "--num-workers", "3"])
    assert args.workers == 3 and "--num-workers" in args.deprecated_options[0]
    args = parser.parse_args(["train", "stage1", "--data", "d", "--out", "o", "--no-progress"])
    assert args.progress is False and "--quiet" in args.deprecated_options[0]
    args = parser.parse_args(["evaluate", "--data", "d", "--model", "m", "--progress"])
    assert args.quiet is False
    assert parser.parse_args(["evaluate", "--data", "d", "--model", "m"]).quiet is False
    leaves = _leaves()
    for command, old in (("finetune", "--num-workers"), ("train stage1", "--no-progress"), ("evaluate", "--progress")):
        assert old + " " not in leaves[command].format_help()  # hidden from the help
    code = main(["evaluate", "--data", str(tmp_path / "none"), "--model", "phantom-tiny", "--progress"])
    err = capsys.readouterr().err
    assert code != 0 and "coreecho evaluate: warning: --progress is deprecated" in err


def _examples(p: argparse.ArgumentParser) -> list[str]:
    text = p.format_help().rstrip()
    assert "\nexamples:\n" in text, p.prog
    block = text.rsplit("\nexamples:\n", 1)[1].splitlines()
    assert 1 <= len(block) <= 3 and all(line.startswith("  coreecho ") for line in block), block
    return [line.strip() for line in block]


@pytest.mark.parametrize("command", ["coreecho", *subparsers(build_parser())])
def test_every_help_ends_with_examples_that_parse(command):
    parser = build_parser()
    p = parser if command == "coreecho" else subparsers(parser)[command]
    lines = _examples(p)
    assert lines == EXAMPLES[command]
    for line in lines:
        argv = shlex.split(line.split("#", 1)[0].split(">", 1)[0])
        assert argv[0] == "coreecho"
        if command != "coreecho" and line == lines[-1]:
            assert " ".join(argv[1:]).startswith(command), (command, line)  # the last one runs this command
        try:
            build_parser().parse_args(argv[1:])
        except SystemExit as err:  # argparse exits on a bad command line
            pytest.fail(f"{line!r} does not parse ({err})")


def test_stage_help_lists_only_the_stage_options():
    stages = subparsers(build_parser())
    one, two = stages["train stage1"].format_help(), stages["train stage2"].format_help()
    for flag in ("--lr ", "--temperature", "--cached-batch", "--frames", "--preset"):
        assert flag in one and flag not in two, flag
    assert "--reinit-head" in two and "--reinit-head" not in one
    for flag in ("--head-lr", "--epochs", "--workers", "--precision", "--quiet"):
        assert flag in one and flag in two


def test_a_stage_option_given_to_the_other_stage_is_refused_with_the_reason(capsys, tmp_path):
    code = main(["train", "stage2", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--lr", "0.1"])
    err = capsys.readouterr().err
    assert code == 2 and "--lr: not used by stage2" in err and "head" in err


def _python_names() -> set[str]:
    """Python argument and config names a help text must not use: every option's dest and every config field."""
    from coreecho.models.config import ModelConfig, PreprocessConfig
    from coreecho.train.config import TrainConfig

    names = {a.dest for p in _leaves().values() for a in p._actions}
    for cls in (TrainConfig, ModelConfig, PreprocessConfig):
        names |= set(cls.__dataclass_fields__)
    return {n for n in names if "_" in n}


def test_no_help_names_a_python_argument():
    names = _python_names()
    for command, p in {"coreecho": build_parser(), **subparsers(build_parser())}.items():
        texts = [a.help for a in p._actions if a.help and a.help != argparse.SUPPRESS] + [p.description or ""]
        for text in texts:
            assert not re.search(r"(?<![\w'\"-])[a-z][a-z0-9_]*=(?!\")", text), (command, text)  # name=value
            assert not re.search(r"\b[a-z_]+\.?[a-z_]*\(", text), (command, text)  # load_model(...)
            words = set(re.findall(r"(?<![\w/.-])[a-z][a-z0-9]*_[a-z0-9_]+(?![\w/.-])", text))
            assert not words & names, (command, words & names, text)


def test_library_messages_reach_the_cli_in_its_words():
    import torch

    from coreecho.cli import _phrased
    from coreecho.errors import DeviceError, InputError
    from coreecho.precision import resolve_device, resolve_precision

    build_parser()  # the boundary learns each command's options from its parser
    with pytest.raises(InputError) as info:
        resolve_precision("fp8", "cpu")
    text, _ = _phrased(info.value, "predict")
    assert text.startswith("--precision: expected one of") and not text.startswith("precision")
    assert cli_words("no spreadsheet found; pass spreadsheet=PATH", "finetune") == \
        "no spreadsheet found; add --spreadsheet PATH"
    assert cli_words("use num_workers=0 to see it", "evaluate") == "use --workers 0 to see it"
    assert cli_words("pass resample_fps=True", "report") == "pass resample_fps=True"  # report has no such option
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError) as info:
            resolve_device("cuda")
        text, _ = _phrased(info.value, "predict")
        assert "device=" not in text and text.count("--device cpu") == 1


def test_resume_refusal_is_several_readable_lines(capsys):
    from coreecho.cli import _phrased
    from coreecho.cli._common import say
    from coreecho.errors import ConfigError
    from coreecho.train.config import TrainConfig
    from coreecho.train.recipe import check_resume

    build_parser()
    with pytest.raises(ConfigError) as info:
        check_resume({"config": TrainConfig(size=64, pad=4).to_dict()}, TrainConfig(size=112, pad=4, num_workers=0),
                     "stage1", "runs/a/checkpoint_last.pt")
    say("train", "error", *_phrased(info.value, "train"))
    lines = capsys.readouterr().err.rstrip("\n").split("\n")
    assert lines[0] == "coreecho train: error: runs/a/checkpoint_last.pt: cannot resume: 1 setting of this run " \
                       "differs from the checkpoint's:"
    assert "    --size: checkpoint 64, now 112" in lines
    assert len(lines) >= 4 and all(len(line) < 240 for line in lines)
    assert not any(word in "\n".join(lines) for word in ("num_workers", "RESUMABLE", "save_every_steps"))


def test_predict_rows_use_one_list_separator_and_cli_words(tmp_path, tiny_model, one_thread):
    from coreecho._lists import split_values
    from coreecho.data.phantom import make_phantom
    from coreecho.video.io import write_video

    frames, meta = make_phantom(ef=50, seed=1, n_frames=60)
    far = tiny_model.config.preprocessing.fps * 2.5  # far from the training fps: the library's note says so
    video = write_video(tmp_path / "fast.avi", frames, fps=far)
    model = tiny_model.save_pretrained(tmp_path / "model")
    out = tmp_path / "ef.csv"
    assert main(["predict", str(video), "--model", str(model), "--clips", "2", "--output", str(out), "--quiet"]) == 0
    row = next(csv.DictReader(out.open()))
    assert row["clip_efs"].count(";") == 1 and " " not in row["clip_efs"] and ";" in row["starts"]
    assert "--resample-fps" in row["warnings"] and "resample_fps" not in row["warnings"]
    assert len(split_values(row["clip_efs"])) == 2 == len(split_values(row["clip_efs"].replace(";", " ")))


def test_uncalibrated_warning_once_per_model_at_the_callers_line(tiny_model, tmp_path):
    import warnings

    from coreecho import load_model

    first = tiny_model.save_pretrained(tmp_path / "a")
    second = tiny_model.save_pretrained(tmp_path / "b")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        load_model(first, device="cpu")  # the line the warning must point at
        load_model(first, device="cpu")
        load_model(second, device="cpu")
    said = [w for w in rec if "carries no calibration" in str(w.message)]
    assert [str(first) in str(w.message) for w in said] == [True, False]  # once per model: a, then b
    assert all(w.filename == __file__ for w in said), [(w.filename, w.lineno) for w in said]


def _library_messages() -> list[tuple[str, str]]:
    """(file, text) of every string in a ``raise``, a ``warn``/``warn_user`` call or a note appended in coreecho
    outside the CLI: the messages that can reach a command-line user."""
    import ast
    from pathlib import Path

    import coreecho

    root = Path(coreecho.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        if "cli" in path.relative_to(root).parts:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            call = isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "warn", "warn_user", "append")
            if isinstance(node, ast.Raise) or call:
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "=" in sub.value:
                        found.append((str(path.relative_to(root)), sub.value))
    return found


def test_library_messages_name_flags_in_every_command_that_has_them():
    from coreecho.cli._vocabulary import options_of

    messages = _library_messages()
    assert any("resample_fps=True" in text for _, text in messages)  # the scan sees the messages it must
    checked = 0
    for command in subparsers(build_parser()):
        command = command.split(" ", 1)[0]
        options = options_of(command)
        for where, text in messages:
            phrased = cli_words(text, command)
            for name in set(re.findall(r"(?<![\w.\-])([a-z][a-z0-9_]*)=(?!=)", text)) & set(options):
                assert not re.search(rf"(?<![\w.\-]){name}=(?!=)", phrased), (where, command, phrased)
                checked += 1
            bare = set(re.findall(r"(?<![\w.\-/`'\"])([a-z][a-z0-9]*_[a-z0-9_]+)(?![\w(/\-`'\"])(?!\.\w)", text))
            for name in bare & set(options):  # "a smaller batch_size": --batch-size
                assert not re.search(rf"(?<![\w.\-/`'\"]){name}(?![\w(/\-`'\"])(?!\.\w)", phrased), (where, phrased)
                checked += 1
    assert checked >= 5


def test_library_internal_loads_do_not_use_up_the_warning(tiny_model, tmp_path):
    import warnings

    from coreecho import load_model
    from coreecho.hub.folder import internal_load

    folder = tiny_model.save_pretrained(tmp_path / "run" / "best_model")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        with internal_load():  # a training run reloading the model it just trained
            load_model(folder, device="cpu")
        assert not [w for w in rec if "carries no calibration" in str(w.message)]
        load_model(folder, device="cpu")  # the user's own load is told
    assert [w.filename for w in rec if "carries no calibration" in str(w.message)] == [__file__]
