"""``coreecho finetune``: cross-validated transfer (linear / MLP probing, full fine-tuning) on CAMUS, HMC-QU or a CSV.

Example:
    $ coreecho finetune --dataset camus --data CAMUS_public --mode mlp --model coreecho-echonet --output camus.json
    $ coreecho finetune --dataset hmcqu --data "HMC-QU Dataset" --mode full --folds 5 --epochs 10
    $ coreecho finetune --dataset csv --data videos.csv --label-column ef --mode mlp --save-model my-model
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from coreecho.cli import _common as common

__all__ = ["add_finetune", "run_finetune"]


def add_finetune(p: argparse.ArgumentParser) -> None:
    """Arguments of ``coreecho finetune``."""
    p.add_argument("--dataset", required=True, choices=("camus", "hmcqu", "csv"), help="dataset layout")
    p.add_argument("--data", required=True, help="dataset folder (camus, hmcqu) or CSV file (csv)")
    p.add_argument("--mode", default="mlp", choices=("linear", "mlp", "full"),
                   help="linear probing, MLP probing (frozen encoder) or full fine-tuning (default: mlp)")
    common.add_model(p)
    p.add_argument("--folds", type=common.bounded_int(0, 1000), default=None,
                   help="folds (default: camus 10, hmcqu 5, csv 5); 0 skips cross-validation (with --save-model)")
    p.add_argument("--epochs", type=common.bounded_int(1, 100_000), default=None, help="training epochs (default: mlp 100, full 10)")
    p.add_argument("--batch-size", type=common.bounded_int(1, common.LIMITS["batch_size"]), default=None, help="default: mlp 32 embeddings, full 16 videos")
    p.add_argument("--lr", type=float, default=1e-5, help="encoder learning rate of full fine-tuning")
    p.add_argument("--head-lr", type=float, default=1e-3, help="head learning rate (mlp, full)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--no-augment", action="store_true", help="no pad-and-crop augmentation in full fine-tuning")
    p.add_argument("--seed", type=int, default=0)
    common.add_device(p)
    common.add_precision(p)
    common.add_workers(p, default="0: the training batches and the frozen-encoder passes load in this process")
    common.add_deprecated_alias(p, "--num-workers", "--workers", "workers", type=common.workers_value)
    common.add_output(p, text="JSON file: metrics, per-fold values and predictions")
    p.add_argument("--save-model", metavar="DIR", help="also fit on every video and save the model (mlp, full)")
    common.add_quiet(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing --output file or --save-model folder")
    g = p.add_argument_group("preprocessing (default: the model's config; camus and hmcqu resample whole sequences)")
    g.add_argument("--frames", type=common.bounded_int(1, 1024), default=None, help="frames per clip or per resampled sequence")
    g.add_argument("--stride", type=common.bounded_int(1, 1024), default=None, help="step between clip frames (sampling clips)")
    g.add_argument("--sampling", choices=("clips", "sequence"), default=None,
                   help="clips of every stride-th frame, or the whole sequence resampled to --frames frames "
                        "(default: sequence for camus and hmcqu, the model's for csv)")
    g.add_argument("--temporal", choices=("linear", "nearest"), default=None,
                   help="interpolation of sampling sequence (default: the model's)")
    g = p.add_argument_group("camus")
    g.add_argument("--quality", default="good,medium",
                   help="image qualities kept, comma-separated, or 'all' (default: good,medium as the paper reports)")
    g.add_argument("--view", default="4CH", help="CAMUS view (default: 4CH)")
    g = p.add_argument_group("hmcqu")
    g.add_argument("--spreadsheet", help="label table (default: DATA/A4C.xlsx or DATA/A4C.csv)")
    g.add_argument("--video-dir", help="video folder (default: DATA/HMC-QU/A4C)")
    g.add_argument("--video-name", default="{name}.avi", help="video file name pattern (default: '{name}.avi')")
    g.add_argument("--name-column", default="ECHO", help="column of recording names (default: ECHO)")
    g.add_argument("--patient-pattern", default=r"^\s*([A-Za-z]*\d+)",
                   help="regular expression whose first group is the patient id in a recording name")
    g.add_argument("--span", default="cycle", choices=("cycle", "all"),
                   help="the annotated cardiac cycle (default) or the whole video")
    g = p.add_argument_group("csv")
    g.add_argument("--task", default="regression", choices=("regression", "classification"))
    g.add_argument("--path-column", default="path", help="column of video paths (relative to the CSV's folder)")
    g.add_argument("--label-column", default="label", help="column of labels (numbers; classes 0, 1, ...)")
    g.add_argument("--group-column", default=None, help="column of patient ids (folds keep patients whole)")


def run_finetune(args: argparse.Namespace) -> int:
    """Run ``coreecho finetune``; returns the exit code."""
    from coreecho.errors import ConfigError  # noqa: PLC0415
    from coreecho.hub import load_model  # noqa: PLC0415
    from coreecho.train.finetune_data import build_dataset  # noqa: PLC0415
    from coreecho.train.transfer import TransferConfig, cross_validate, finetune  # noqa: PLC0415

    args.model = args.model or "coreecho-echonet"
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    if args.folds == 0 and not args.save_model:
        raise common.UsageError("--folds 0 skips cross-validation; give --save-model DIR as well")
    if args.save_model and args.mode == "linear":
        raise common.UsageError("--save-model needs --mode mlp or full (a linear probe is not a CoReEcho head)")
    if args.folds is not None and args.folds == 1:
        raise common.UsageError("--folds must be 0 or >= 2")
    from coreecho.cli.output import check_output  # noqa: PLC0415
    from coreecho.precision import resolve_device  # noqa: PLC0415

    from coreecho.cli._guards import check_result_file, check_result_folder, dataset_inputs  # noqa: PLC0415

    if args.output:
        check_output(args.output, [args.data], option="--output")
        check_result_file(args.output, dataset_inputs(args.data), overwrite=args.overwrite, model=args.model)
    if args.save_model:
        check_result_folder(args.save_model, dataset_inputs(args.data), overwrite=args.overwrite, model=args.model,
                            option="--save-model")
    resolve_device(args.device)
    cfg = TransferConfig(mode=args.mode, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         head_lr=args.head_lr, weight_decay=args.weight_decay, augment=not args.no_augment,
                         seed=args.seed, device=args.device, num_workers=args.workers or 0, precision=args.precision)
    model = load_model(args.model, device=args.device)
    try:
        dataset = build_dataset(
            args.dataset, args.data, model, seed=args.seed, frames=args.frames, stride=args.stride,
            sampling=args.sampling, temporal=args.temporal, quality=args.quality, view=args.view,
            spreadsheet=args.spreadsheet, video_dir=args.video_dir, video_name=args.video_name,
            name_column=args.name_column, patient_pattern=args.patient_pattern, span=args.span, task=args.task,
            path_column=args.path_column, label_column=args.label_column, group_column=args.group_column)
    except ConfigError as err:
        raise common.UsageError(str(err)) from err
    if log:
        log(f"{args.dataset}: {len(dataset)} videos from {args.data}; model {args.model}; {args.mode}")
    if args.folds != 0:
        result = cross_validate(model, dataset, config=cfg, folds=args.folds, dataset_name=args.dataset, log=log)
        result.config["model_source"] = str(args.model)
        result.config["data"] = str(args.data)
        print(result.table())
        if args.output:
            print(f"wrote {result.save(args.output)}", file=sys.stderr)
    if args.save_model:
        label = {"camus": "ef", "hmcqu": "mi"}.get(args.dataset)
        tuned = finetune(model, dataset, config=cfg, label_name=label, log=log)
        # the fine-tuned model is served as it was trained: whole sequences for CAMUS / HMC-QU, overrides included
        tuned.config.preprocessing = dataset.preprocess
        tuned.config.metadata["finetune"]["data"] = f"{args.dataset}:{args.data}"
        from coreecho._lock import output_lock  # noqa: PLC0415

        Path(args.save_model).absolute().parent.mkdir(parents=True, exist_ok=True)
        with output_lock(args.save_model):
            out = tuned.save_pretrained(args.save_model, title=f"CoReEcho fine-tuned on {args.dataset}")
        print(f"saved the fine-tuned model to {out}", file=sys.stderr)
    return 0


