"""``coreecho train stage1|stage2`` and ``coreecho evaluate``: options and commands (the training itself lives in
:mod:`coreecho.train`).

Example:
    $ coreecho train stage1 --data EchoNet-Dynamic --out runs/stage1
    $ coreecho train stage2 --data EchoNet-Dynamic --out runs/stage2 --init runs/stage1
    $ coreecho evaluate --data EchoNet-Dynamic --split test --model runs/stage2/model \\
          --starts test_start_indexes.pkl --output per_video.csv
    $ torchrun --nproc_per_node 4 -m coreecho train stage1 --data EchoNet-Dynamic --out runs/stage1 --batch-size 4
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
from typing import Any

from coreecho.cli import _common as common
from coreecho.errors import ConfigError, CoReEchoError

__all__ = ["add_train_arguments", "run_train", "add_evaluate_arguments", "run_evaluate", "config_from_args"]

def _setting(name: str) -> Any:
    """The argparse type of a training setting: its range is :mod:`coreecho.train.limits`'s (one table for the
    options and ``TrainConfig``)."""
    from coreecho.train.limits import FLOAT_RANGES, INT_RANGES, describe_range, in_range

    if name in INT_RANGES:
        low, high = INT_RANGES[name]
        return common.bounded_int(low, high)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not in_range(value, name):
            raise argparse.ArgumentTypeError(f"expected {describe_range(name)}, got {text}")
        return value

    parse.__name__ = "number"
    assert name in FLOAT_RANGES
    return parse


def _choice(*names: str) -> Any:
    def parse(text: str) -> str:
        if text not in names:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(names)}, got {text!r}")
        return text

    parse.__name__ = "choice"
    return parse


def _decay_epoch(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a 0-based pass (an integer >= 0), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a 0-based pass (an integer >= 0), got {value}")
    return value


# option, TrainConfig field, type, help. Defaults come from TrainConfig (shown in the help).
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--init", "init", str, "stage 1: uniformer-small-k400 | PATH | none | auto; stage 2: the stage-1 --out folder, "
                            "a model folder or an official best.pth"),
    ("--preset", "preset", str, "encoder preset: small, base, tiny, micro (tiny/micro for CPU runs)"),
    ("--architecture", "architecture", str, "encoder architecture without a preset"),
    ("--frames", "frames", common.bounded_int(1, 1024), "frames per clip"),
    ("--stride", "stride", common.bounded_int(1, 1024), "step between clip frames"),
    ("--size", "size", common.bounded_int(8, 4096), "input side in pixels"),
    ("--pad", "pad", common.bounded_int(0, 4096), "training augmentation: zero padding in pixels, read as --pad-style says; with the "
                          "default style, frames are padded to size + PAD and cropped back at a random position "
                          "(12: every clip moves by -6..+6 px per axis, as the official code); 0: no augmentation"),
    ("--pad-style", "pad_style", _choice("coreecho", "echonet-dynamic"), "what --pad means: coreecho (PAD pixels per axis in total, PAD + 1 crop "
                                      "positions; the official CoReEcho augmentation) or echonet-dynamic (PAD pixels "
                                      "on each side, 2 x PAD positions: -11..+12 px for --pad 12)"),
    ("--val-clips", "val_clips", common.bounded_int(1, common.LIMITS["clips"]),
     "random clips per validation video, averaged (official: 1)"),
    ("--epochs", "epochs", common.bounded_int(1, 100_000),
     "passes over the training set (default: 26 for stage1, 5 for stage2, the passes the official scripts make "
     "with their README's --epochs 25 and --epochs 4, since they run passes 0..epochs inclusive; so the official "
     "--epochs N is coreecho's --epochs N+1)"),
    ("--batch-size", "batch_size", _setting("batch_size"), "videos per step per process"),
    ("--lr", "lr", _setting("lr"), "encoder learning rate (stage 1)"),
    ("--weight-decay", "weight_decay", _setting("weight_decay"), "encoder weight decay"),
    ("--head-lr", "head_lr", _setting("head_lr"), "head learning rate"),
    ("--head-weight-decay", "head_weight_decay", _setting("head_weight_decay"), "head weight decay"),
    ("--lr-decay", "lr_decay", _setting("lr_decay"), "learning-rate factor at each decay epoch"),
    ("--temperature", "temperature", _setting("temperature"), "Rank-N-Contrast temperature"),
    ("--loss-chunk-size", "loss_chunk_size", _setting("loss_chunk_size"), "anchors per chunk of the loss (memory)"),
    ("--micro-batch", "micro_batch", _setting("micro_batch"), "clips per encoder call with --cached-batch"),
    ("--seed", "seed", _setting("seed"), "seed of every random choice"),
    ("--workers", "num_workers", common.workers_value, common.workers_help("4")),
    ("--device", "device", common.device_value, common.DEVICE_HELP),
    ("--precision", "precision", _choice(*common.PRECISIONS), common.precision_help(training=True)),
    ("--save-every-steps", "save_every_steps", _setting("save_every_steps"), "also checkpoint every N steps"),
    ("--limit-train", "limit_train", _setting("limit_train"), "use only the first N training videos"),
    ("--limit-val", "limit_val", _setting("limit_val"), "use only the first N validation videos"),
]
_FLAGS: list[tuple[str, str, str]] = [
    ("--reinit-head", "reinit_head", "stage 2: train a fresh head instead of continuing the stage-1 head"),
    ("--cached-batch", "cached_batch", "stage 1: gradient caching (exact loss, micro-batch activation memory)"),
    ("--grad-checkpointing", "grad_checkpointing", "recompute encoder activations in backward"),
    ("--sync-bn", "sync_bn", "SyncBatchNorm under multi-GPU DDP"),
    ("--resume", "resume", "continue from OUT/checkpoint_last.pt if present"),
    ("--overwrite", "overwrite", "start a new run in an --out folder that holds another run's files (their "
                                 "checkpoints, metrics and models are removed first); without it such a folder is "
                                 "refused unless --resume"),
]

#: Options a stage does not use, and why: giving one is refused rather than silently ignored.
IGNORED_BY_STAGE: dict[str, dict[str, str]] = {
    "stage1": {"reinit_head": "stage 1 always trains a fresh head with the encoder"},
    "stage2": {
        **{name: "stage 2 takes the encoder and its input recipe (frames, stride, size, mean/std) from the "
                 "--init model" for name in ("frames", "stride", "size", "preset", "architecture", "encoder_args")},
        **{name: "stage 2 freezes the encoder and trains only the head (set --head-lr / --head-weight-decay)"
           for name in ("lr", "weight_decay", "cached_batch", "micro_batch", "grad_checkpointing", "sync_bn")},
        **{name: "stage 2 trains with the L1 loss only (the Rank-N-Contrast loss is stage 1's)"
           for name in ("temperature", "loss_chunk_size")},
    },
}


def _default_of(defaults: Any, name: str, stage: str) -> Any:
    """The TrainConfig default of ``name`` as the help shows it (a per-stage default: that stage's)."""
    value = getattr(defaults, name)
    if name == "epochs" and value is None:
        return {"stage1": 26, "stage2": 5}[stage]
    return value


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


#: The help line of each stage.
STAGES = {"stage1": "train the encoder with the Rank-N-Contrast loss, and an EF head with it",
          "stage2": "train the EF head on the frozen stage-1 encoder"}


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho train``: one sub-command per stage, whose help lists only the options it uses."""
    from coreecho.cli._vocabulary import example_lines

    stages = p.add_subparsers(dest="stage", metavar="STAGE", required=True)
    for stage, text in STAGES.items():
        sp = stages.add_parser(stage, help=text, description=text, epilog=example_lines(f"train {stage}"),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        add_stage_arguments(sp, stage)
        common.add_debug(sp)


def add_stage_arguments(p: argparse.ArgumentParser, stage: str) -> None:
    """Options of ``coreecho train STAGE``. Those the stage does not use (:data:`IGNORED_BY_STAGE`) are hidden
    from its help; given anyway, they are refused with the reason (:func:`check_stage_options`)."""
    from coreecho.train.config import TrainConfig

    defaults = TrainConfig()
    unused = set(IGNORED_BY_STAGE[stage])

    def shown(name: str, text: str) -> str:
        return argparse.SUPPRESS if name in unused else text

    p.add_argument("--data", required=True, help="EchoNet-Dynamic folder (FileList.csv, VolumeTracings.csv, Videos/)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, metrics.csv, best_model/, model/)")
    p.add_argument("--config", type=str, help="JSON file with TrainConfig fields (options given here override it)")
    for opt, name, typ, text in _OPTIONS:
        text = text if "(default" in text else f"{text} (default: {_default_of(defaults, name, stage)})"
        p.add_argument(opt, dest=name, type=typ, default=None, help=shown(name, text),
                       metavar=opt[2:].upper().replace("-", "_"))
    p.add_argument("--encoder-args", dest="encoder_args", type=_json_dict, default=None,
                   help=shown("encoder_args", 'encoder keyword arguments as JSON, e.g. '
                                              '\'{"depth": [1,1,1,1], "drop_rate": 0.0}\''))
    p.add_argument("--head-args", dest="head_args", type=_json_dict, default=None, help="head keyword arguments (JSON)")
    p.add_argument("--lr-decay-epochs", dest="lr_decay_epochs", type=_decay_epoch, nargs="*", default=None,
                   help=f"0-based epochs from which the lr is multiplied by --lr-decay (default: "
                        f"{list(defaults.lr_decay_epochs)})")
    for opt, name, text in _FLAGS:
        p.add_argument(opt, dest=name, action="store_true", default=None, help=shown(name, text))
    p.add_argument("--quiet", dest="progress", action="store_false", default=None, help=common.QUIET_HELP)
    common.add_deprecated_alias(p, "--no-progress", "--quiet", "progress", store=False)
    p.add_argument("--no-tensorboard", dest="tensorboard", action="store_false", default=None,
                   help="do not log to TensorBoard even when it is installed")


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~coreecho.train.config.TrainConfig` of parsed ``coreecho train`` arguments."""
    from coreecho.train.config import TRAIN_FORMAT_VERSION, TrainConfig

    base: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config) as fh:
                base = json.load(fh)
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError(f"{args.config}: cannot read the training config ({err})") from err
        if not isinstance(base, dict):
            raise ConfigError(f"{args.config}: expected a JSON object of TrainConfig fields")
        try:  # read in the file's own format_version (an old file's pad keeps its meaning), then today's
            base = TrainConfig.from_dict(base).to_dict()
        except ConfigError as err:
            raise ConfigError(f"{args.config}: {err}") from None
    names = [n for _, n, _, _ in _OPTIONS] + [n for _, n, _ in _FLAGS] + [
        "encoder_args", "head_args", "lr_decay_epochs", "progress", "tensorboard"]
    for name in names:
        value = getattr(args, name, None)
        if value is not None:
            base[name] = value
    if getattr(args, "progress", None) is None and not args.config:
        base["progress"] = sys.stderr.isatty()  # progress bars on a terminal; a log file gets the epoch lines only
    base["data"], base["out"] = args.data, args.out
    base["command"] = _command_line(args)
    base["format_version"] = TRAIN_FORMAT_VERSION  # options given here have today's meaning
    return TrainConfig.from_dict(base)


def _command_line(args: argparse.Namespace) -> str:
    """The ``coreecho train`` command equivalent to ``args`` (recorded in the exported model)."""
    parts = ["coreecho", "train", args.stage, "--data", args.data, "--out", args.out]
    if args.config:
        parts += ["--config", args.config]
    for opt, name, _, _ in _OPTIONS:
        if getattr(args, name, None) is not None:
            parts += [opt, str(getattr(args, name))]
    for opt, name in (("--encoder-args", "encoder_args"), ("--head-args", "head_args")):
        if getattr(args, name, None) is not None:
            parts += [opt, json.dumps(getattr(args, name), separators=(",", ":"))]
    if args.lr_decay_epochs is not None:
        parts += ["--lr-decay-epochs", *map(str, args.lr_decay_epochs)]
    parts += [opt for opt, name, _ in _FLAGS if getattr(args, name, None)]
    parts += [opt for opt, name in (("--quiet", "progress"), ("--no-tensorboard", "tensorboard"))
              if getattr(args, name, None) is False]
    return " ".join(shlex.quote(p) for p in parts)


def _is_state_error(err: BaseException) -> bool:
    text = str(err)
    return any(s in text for s in ("state_dict", "state dict", "parameter group", "size mismatch", "RNG state",
                                   "set_state", "setstate")) or isinstance(err, KeyError)


def _option_of(name: str) -> str:
    for opt, field_name, *_ in _OPTIONS + _FLAGS:  # type: ignore[operator]
        if field_name == name:
            return opt
    return "--" + name.replace("_", "-")


def check_stage_options(args: argparse.Namespace) -> None:
    """Refuse options given on the command line that ``args.stage`` does not use (:data:`IGNORED_BY_STAGE`).

    Raises:
        UsageError: naming the option and why the stage does not use it.
    """
    ignored = dict(IGNORED_BY_STAGE[args.stage])
    if args.stage == "stage2" and not getattr(args, "reinit_head", None):
        ignored["head_args"] = "stage 2 continues the stage-1 head unless --reinit-head is given"
    for name, why in ignored.items():
        if getattr(args, name, None) not in (None, False):
            raise common.UsageError(f"{_option_of(name)}: not used by {args.stage}: {why}. Remove it")
    from coreecho.train.distributed import distributed_env

    if args.stage == "stage1" and args.batch_size == 1 and distributed_env()[0] < 2:
        raise common.UsageError("--batch-size 1: stage 1 needs at least 2 videos per step: the Rank-N-Contrast "
                                "loss compares each video with the others of its batch (with one video it is 0 "
                                "and nothing is learned)")
    if args.stage == "stage2" and args.batch_size == 1:
        raise common.UsageError("--batch-size 1: stage 2 needs at least 2 videos per step (the head's BatchNorm "
                                "layers cannot train on one)")


def run_train(args: argparse.Namespace) -> int:
    """Run ``coreecho train``."""
    from coreecho.train.distributed import is_main

    from coreecho.train.runfolder import RunFolderError

    check_stage_options(args)
    cfg = config_from_args(args)
    try:
        if args.stage == "stage1":
            from coreecho.train.stage1 import train_stage1

            result = train_stage1(cfg)
        else:
            from coreecho.train.stage2 import train_stage2

            result = train_stage2(cfg)
    except RunFolderError as err:
        raise common.UsageError(str(err)) from err
    except (RuntimeError, ValueError, KeyError) as err:
        if not cfg.resume or isinstance(err, CoReEchoError) or not _is_state_error(err):
            raise
        from coreecho.errors import WeightsError

        first = str(err).strip().splitlines()[0][:300]
        raise WeightsError(f"{cfg.out}/checkpoint_last.pt: its saved state does not fit this run ({first}); the file "
                           "was edited or belongs to another run. Restore it, or start again without --resume (or "
                           "with another --out)") from err
    if is_main():
        print(f"{args.stage}: best validation MAE {result.best_val_mae:.3f} at epoch {result.best_epoch + 1}; "
              f"model: {result.final_model}")
    return 0


def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho evaluate``."""
    p.add_argument("--data", required=True, help="dataset folder in the EchoNet-Dynamic layout")
    p.add_argument("--split", default="test", help="train, val, test or all")
    common.add_model(p, required=True)
    common.add_clips(p)
    p.add_argument("--clip-policy", choices=["even", "random"], default="even",
                   help="for --clips N: evenly spaced (as coreecho predict) or random (as the official validation)")
    p.add_argument("--starts", help="fixed starts per video (.pkl official file, .json or .csv); overrides --clips")
    common.add_output(p, text="write the per-video CSV (name, true EF, predicted EF, per-clip EFs) here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file (and its figure)")
    p.add_argument("--no-plot", dest="plot", action="store_false",
                   help="with --output, do not write the agreement figure OUTPUT_STEM_agreement.png beside it "
                        "(predicted vs true EF with the identity line, and the Bland-Altman plot; needs matplotlib)")
    common.add_batch_size(p)
    common.add_device(p)
    common.add_precision(p)
    common.add_threads(p)
    common.add_workers(p)
    p.add_argument("--seed", type=int, default=0, help="seed of random clips and of the bootstrap")
    p.add_argument("--bootstrap", type=common.bounded_int(0, 1_000_000), default=1000, help="bootstrap resamples for the 95%% CIs (0: none)")
    p.add_argument("--limit", type=common.bounded_int(1), default=None, help="evaluate only the first N videos")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    common.add_quiet(p)
    common.add_deprecated_alias(p, "--progress", "--quiet (progress bars are shown by default on a terminal)",
                                "quiet", store=False)


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``coreecho evaluate``."""
    from coreecho.train.distributed import cleanup_distributed, distributed_env, init_distributed
    from coreecho.train.evaluation import evaluate

    lock = contextlib.nullcontext()
    if args.output:
        from coreecho._lock import output_lock
        from coreecho.cli._guards import check_result_file, dataset_inputs
        from coreecho.cli.output import check_output

        inputs = dataset_inputs(args.data) + [args.starts or ""]
        planned = _figure_path(args)  # the agreement PNG: never an input either
        check_output(args.output, inputs, targets=[args.output] + ([str(planned)] if planned else []))
        check_result_file(args.output, inputs, overwrite=args.overwrite, model=args.model)
        if planned is not None:
            check_result_file(str(planned), inputs, overwrite=args.overwrite, model=args.model,
                              option="--output's figure")
        if distributed_env()[1] == 0:  # rank 0 writes the output
            lock = output_lock(args.output)
    # under torchrun each rank evaluates every WORLD_SIZE-th video on its own device; rows are gathered in order
    env = init_distributed(args.device) if distributed_env()[0] > 1 else None
    try:
        with lock:
            result = evaluate(args.model, args.data, args.split, clips=args.clips, starts=args.starts,
                              clip_policy=args.clip_policy, batch_size=args.batch_size,
                              device=env.device if env else args.device, precision=args.precision,
                              num_workers=args.workers, threads=args.threads, seed=args.seed,
                              bootstrap=args.bootstrap, output=args.output, limit=args.limit,
                              progress=not args.quiet and sys.stderr.isatty(),
                              rank=env.rank if env else 0, world_size=env.world_size if env else 1)
            figure = _write_agreement(args, result) if (env is None or env.rank == 0) else None
    finally:
        if env is not None:
            cleanup_distributed(env)
    if env is not None and env.rank != 0:
        return 0
    if args.json:
        print(json.dumps(result.metrics, indent=2))
    else:
        print(result.summary())
        if args.output:
            print(f"per-video predictions: {args.output}")
    if figure is not None:
        print(f"agreement figure: {figure}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _figure_path(args: argparse.Namespace) -> Any:
    """The agreement figure ``evaluate --output`` writes (``None`` with ``--no-plot`` or without ``--output``)."""
    if not args.output or not getattr(args, "plot", True):
        return None
    from coreecho.train.figures import agreement_path

    return agreement_path(args.output)


def _write_agreement(args: argparse.Namespace, result: Any) -> Any:
    """Write the agreement figure of ``result``; without matplotlib (or with fewer than 2 videos) one warning line
    says why and the command still succeeds."""
    path = _figure_path(args)
    if path is None:
        return None
    from coreecho._warnings import warn_user
    from coreecho.analysis.figures import plot_agreement
    from coreecho.errors import InputError, MissingDependencyError
    from coreecho.train.figures import write_figure

    rows = result.rows
    title = f"{args.model} on {args.data} ({args.split} split)"
    try:
        return write_figure(plot_agreement, path, [r["ef_true"] for r in rows], [r["ef_pred"] for r in rows],
                            title=title)
    except (MissingDependencyError, InputError) as err:
        warn_user(f"agreement figure {path} not written: {err} (--no-plot leaves it out)")
        return None


