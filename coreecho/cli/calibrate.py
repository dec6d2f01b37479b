"""``coreecho calibrate``: fit a conformal EF interval and a shift detector on held-out labelled videos.

The calibration is written into the model folder (``calibration.safetensors`` + the ``calibration`` entry of
``config.json``), so that ``load_model`` and ``coreecho predict`` use it from then on.

Example:
    $ coreecho calibrate coreecho-echonet --data EchoNet-Dynamic --split val   # the official model, in place
    $ coreecho calibrate runs/stage2 --data EchoNet-Dynamic --split val
    $ coreecho calibrate phantom-tiny --data videos.csv --out my-calibrated-model
"""

from __future__ import annotations

import argparse

from coreecho.cli import _common as common

__all__ = ["add_calibrate", "run_calibrate"]


def add_calibrate(p: argparse.ArgumentParser) -> None:
    """Options of ``coreecho calibrate``."""
    p.add_argument("model", help="model folder, registered name or Hub repo id (coreecho-echonet is fetched if "
                   "needed and calibrated in place in coreecho's cache)")
    p.add_argument("--data", required=True, help="EchoNet-Dynamic folder, CSV of videos (path,label) or CAMUS folder")
    p.add_argument("--split", default="val", help="split of an EchoNet-Dynamic folder (default: val)")
    p.add_argument("--out", default=None, help="folder to write the calibrated model (default: the model folder "
                   "itself when MODEL is a folder)")
    p.add_argument("--coverage", type=common.bounded_float(0.01, 0.999), default=0.9, help="default interval coverage (default 0.9)")
    p.add_argument("--false-alarm-rate", type=common.bounded_float(0.0001, 0.5), default=0.05, help="shift detector false alarms (0.05)")
    p.add_argument("--difficulty", default="knn", choices=("knn", "spread", "constant"),
                   help="difficulty score of the adaptive interval (default: knn, embedding neighbourhood)")
    p.add_argument("--detector", default="pca", choices=("pca", "knn", "mahalanobis"),
                   help="shift score (default: pca, distance from the embeddings' principal subspace)")
    p.add_argument("--limit", type=common.bounded_int(1), default=None, help="use only the first N videos")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an existing --out folder (other "
                   "than the model folder itself, which calibrate updates in place)")
    common.add_device(p)
    common.add_batch_size(p)
    common.add_quiet(p)
    p.add_argument("--seed", type=common.bounded_int(0, 2**32 - 1), default=0, help="seed of the reference/calibration split")


def run_calibrate(args: argparse.Namespace) -> int:
    """Run ``coreecho calibrate``."""
    from pathlib import Path

    from coreecho.analysis.calibration import calibrate
    from coreecho.hub import load_model

    from coreecho.hub.registry import installed_dir, registry

    # a published model (coreecho-echonet) is calibrated in place in coreecho's cache, where load_model finds it
    # (it is fetched and installed first when needed); a bundled model is never modified: it needs --out
    published = not Path(args.model).expanduser().exists() and \
        getattr(registry().get(args.model), "kind", None) == "download"
    in_place = args.out is None and published
    out = args.out or (args.model if Path(args.model).expanduser().is_dir() else None) or \
        (str(installed_dir(args.model)) if published else None)
    if out is None:
        raise common.UsageError(f"MODEL {args.model} is neither a model folder nor a published model (which is "
                                "calibrated in place in coreecho's cache); give --out FOLDER for the calibrated copy")
    if Path(out).exists() and not Path(out).is_dir():
        raise common.UsageError(f"--out {out} is a file; give a folder")
    from coreecho.cli._guards import check_result_folder, dataset_inputs

    check_result_folder(out, dataset_inputs(args.data), overwrite=args.overwrite,
                        model=out if in_place else args.model, same_as_model=True)
    from coreecho.precision import resolve_device

    device = resolve_device(args.device)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*carries no calibration.*")
        model = load_model(args.model, device=device)
    from coreecho.models.task import check_ef_regression

    check_ef_regression(model.config, args.model, "calibrate")  # the interval is in EF points
    cal = calibrate(model, args.data, split=args.split, coverage=args.coverage, false_alarm_rate=args.false_alarm_rate,
                    difficulty=args.difficulty, detector=args.detector, limit=args.limit, seed=args.seed,
                    batch_size=args.batch_size, progress=False if args.quiet else None)
    from coreecho._lock import output_lock

    Path(out).absolute().parent.mkdir(parents=True, exist_ok=True)
    with output_lock(out):  # a second calibrate (or run) on this folder is refused while it is written
        model.save_pretrained(out)
    info = cal.metadata
    q = {level: cal.interval.quantile(level) for level in (0.8, 0.9, 0.95)}
    print(f"calibrated on {info['n_videos']} videos ({info['n_reference']} reference, {info['n_calibration']} "
          f"calibration); MAE {info['mae']:.2f}")
    print("  conformal quantiles (x difficulty): " + ", ".join(f"{k:.0%}: {v:.3g}" for k, v in q.items()))
    if cal.detector is not None:
        print(f"  shift detector: {cal.detector.method}, threshold {cal.detector.threshold:.4g}, expected false "
              f"alarm rate {cal.detector.expected_false_alarm_rate:.3f}")
    print(f"wrote {Path(out) / 'calibration.safetensors'} and the 'calibration' entry of {Path(out) / 'config.json'}")
    return 0


