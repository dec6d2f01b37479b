"""A one-page report of one video: a PNG figure, and an HTML page that embeds it with the numbers as text.

What the page shows (``coreecho report VIDEO`` on the command line):

* frames sampled over the whole video, with the ultrasound fan box the model crops to (orange);
* Grad-CAM overlays of the clip in the middle of the video at a stage that localises (``blocks3`` by default:
  twice as fine as the last stage and the one that localised best in the measurements of ``docs/analysis.md``;
  when its map is empty the report falls back to ``norm``), what the model saw after the crop and resize;
* the EF of each clip and their mean, with the calibrated interval as a band when the model carries a
  calibration (otherwise the page says "not calibrated");
* the distribution-shift verdict in plain words;
* the model's name and licence, and "not for clinical use".

Privacy: the page names the video by its file name only (no folders, no DICOM tags) and every text taken from
outside (file name, model name, warnings) is HTML-escaped; in the figure, control characters are shown as ``?``
and ``$`` cannot start matplotlib's math mode.

Example:
    >>> r = build_report("a4c.avi", model="phantom-tiny", output="report/")  # doctest: +SKIP
    >>> r.figure, r.html, round(r.prediction.ef, 1)  # doctest: +SKIP
    (PosixPath('report/a4c.avi-report.png'), PosixPath('report/a4c.avi-report.html'), 57.3)
"""

from __future__ import annotations

import base64
import html
import os
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from coreecho.errors import MissingDependencyError

__all__ = ["Report", "build_report", "report_paths", "report_html", "plot_report", "shift_verdict",
           "display_name", "REPORT_STAGES", "CLINICAL_NOTICE"]

#: Grad-CAM stages tried in order: the first whose map is not empty is shown.
REPORT_STAGES = ("blocks3", "norm")
#: The notice every report carries.
CLINICAL_NOTICE = "Not for clinical use: a research tool; its numbers are not a diagnosis."
_FRAMES_SHOWN = 4


@dataclass
class Report:
    """What a report shows (the numbers of the HTML page).

    Attributes:
        name: the video's file name as shown (no folders; control characters replaced by ``?``).
        model: the model's name (``--model``) and ``license`` its licence.
        prediction: the :class:`~coreecho.inference.Prediction` (per-clip EFs, interval, shift score).
        shift_threshold: the shift detector's threshold, or ``None`` without a detector.
        fan_box: ``(top, bottom, left, right)`` of the crop in video pixels, or ``None`` when no crop is made.
        frame_size: ``(height, width)`` of the video.
        shown_frames: video frames drawn in the first row.
        stage: the Grad-CAM stage shown; ``cam_start`` the first frame of the explained clip and ``cam_empty``
            whether its map was empty at every stage tried.
        figure, html: the files written (``None`` when not written).
    """

    name: str
    model: str
    license: str
    prediction: Any
    shift_threshold: float | None = None
    fan_box: tuple[int, int, int, int] | None = None
    frame_size: tuple[int, int] = (0, 0)
    shown_frames: list[int] = field(default_factory=list)
    stage: str = ""
    cam_start: int = -1
    cam_empty: bool = False
    figure: Path | None = None
    html: Path | None = None


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def display_name(source: Any, limit: int = 80) -> str:
    """The file name of a source as a report shows it: no folders, control characters as ``?``, long names cut
    in the middle.

    Example:
        >>> display_name("/data/patient x/a\\nb.avi")
        'a?b.avi'
    """
    name = os.path.basename(str(source)) if isinstance(source, (str, os.PathLike)) else "array"
    name = _CONTROL.sub("?", name) or "video"
    if len(name) > limit:
        name = name[: limit // 2 - 1] + "…" + name[-(limit // 2 - 1):]
    return name


def _mpl(text: str) -> str:
    """Text safe for matplotlib: ``$`` does not start math mode."""
    return text.replace("$", r"\$")


def report_paths(output: str | os.PathLike | None, video: Any) -> tuple[Path, Path]:
    """``(png, html)`` for ``--output``: an existing folder or a name ending in ``/`` gets
    ``<video file name>-report.png/.html`` inside (characters other than letters, digits and ``._-`` become
    ``_``); anything else is a file stem (a ``.png``/``.html`` suffix is dropped). Default: the folder
    ``coreecho-report``.

    Example:
        >>> report_paths("out/", "/x/a4c.avi")
        (PosixPath('out/a4c.avi-report.png'), PosixPath('out/a4c.avi-report.html'))
        >>> report_paths("out/summary.html", "a4c.avi")
        (PosixPath('out/summary.png'), PosixPath('out/summary.html'))
    """
    text = "coreecho-report/" if output is None else str(output)
    if text.endswith(("/", os.sep)) or Path(text).is_dir():
        stem = os.path.basename(str(video)) if isinstance(video, (str, os.PathLike)) else "array"
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "video"  # a4c.avi and a4c.npy stay apart
        base = Path(text) / f"{stem}-report"
    else:
        base = Path(text)
        if base.suffix.lower() in (".png", ".html", ".htm"):
            base = base.with_suffix("")
    return base.with_name(base.name + ".png"), base.with_name(base.name + ".html")


def shift_verdict(pred: Any, threshold: float | None = None) -> str:
    """The distribution-shift result in plain words.

    Example:
        >>> from types import SimpleNamespace
        >>> shift_verdict(SimpleNamespace(is_shifted=None, shift_score=None))
        'not checked: this model has no shift detector, so nothing says whether this video resembles its training data.'
    """
    if getattr(pred, "is_shifted", None) is None:
        return ("not checked: this model has no shift detector, so nothing says whether this video resembles its "
                "training data.")
    bound = f"the threshold {threshold:.3g}" if threshold is not None else "its threshold"
    if pred.is_shifted:
        return (f"this video looks UNLIKE the videos the model was trained on (shift score {pred.shift_score:.3g} is "
                f"above {bound}): do not trust this EF.")
    return (f"this video resembles the videos the model was trained on (shift score {pred.shift_score:.3g}, not "
            f"above {bound}).")


def _interval_text(pred: Any) -> str:
    if getattr(pred, "ef_low", None) is None:
        return "not calibrated: this model has no calibration, so there is no interval (see docs/calibration.md)"
    return f"{100 * pred.coverage:.0f}% interval {pred.ef_low:.1f} – {pred.ef_high:.1f} % (calibrated)"


def _sample_frames(model: Any, video: Any, n: int) -> tuple[np.ndarray, list[int], Any, tuple | None]:
    """Frames spread over the video, their numbers, the video's info, and the fan box the pipeline crops to."""
    from coreecho.video.pipeline import sector_frames  # noqa: PLC0415
    from coreecho.video.transforms import find_sector_bbox  # noqa: PLC0415

    pipe = model.pipeline()
    reader = pipe.open(video)
    try:
        info = reader.info
        picks = sorted({int(round(x)) for x in np.linspace(0, info.n_frames - 1, min(n, info.n_frames))})
        frames = reader.read(picks)
        box = None
        if pipe.needs_sector(info):
            box = tuple(int(v) for v in find_sector_bbox(reader.read(sector_frames(info.n_frames))))
    finally:
        if reader is not video:
            reader.close()
    return frames, picks, info, box


def _explain(model: Any, video: Any, stage: str | None) -> Any:
    from coreecho.analysis.gradcam import explain  # noqa: PLC0415

    stages = (stage,) if stage else REPORT_STAGES
    ex = None
    for s in stages:
        ex = explain(model, video, stage=s)
        if not ex.empty:
            break
    return ex


def plot_report(path: str | os.PathLike, report: Report, frames: np.ndarray, explanation: Any,
                fps: float | None = None, dpi: int = 110) -> Path:
    """Draw the report figure (needs matplotlib) and write it as PNG."""
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415
        from matplotlib.patches import Rectangle  # noqa: PLC0415
    except ImportError as err:
        raise MissingDependencyError("matplotlib", "viz", "the report figure") from err
    from coreecho.analysis.rendering import OVERLAY_FLOOR, overlay  # noqa: PLC0415

    pred = report.prediction
    n = _FRAMES_SHOWN
    fig = Figure(figsize=(12.0, 10.4), dpi=dpi)
    grid = fig.add_gridspec(3, n, height_ratios=[1.0, 1.0, 1.15], left=0.05, right=0.97, top=0.87, bottom=0.08,
                            hspace=0.42, wspace=0.12)

    def when(i: int) -> str:
        return f"frame {i}" + (f", {i / fps:.2f} s" if fps else "")

    for j in range(n):
        ax = fig.add_subplot(grid[0, j])
        ax.set_xticks([])
        ax.set_yticks([])
        if j >= len(frames):
            ax.set_visible(False)
            continue
        ax.imshow(frames[j], interpolation="antialiased")
        if report.fan_box is not None:
            top, bottom, left, right = report.fan_box
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), right - left, bottom - top, fill=False,
                                   edgecolor="tab:orange", lw=1.6))
        ax.set_title(when(report.shown_frames[j]), fontsize=9)
    h, w = report.frame_size
    crop = (f"orange box: the fan the model crops to ({report.fan_box[3] - report.fan_box[2]}x"
            f"{report.fan_box[1] - report.fan_box[0]} of {w}x{h} pixels)" if report.fan_box is not None
            else f"no crop: the {w}x{h} frames are used whole")
    row1 = fig.axes[0].get_position()
    fig.text(0.5, row1.y1 + 0.035, f"frames over the whole video; {crop}", ha="center", va="bottom", fontsize=9)

    idx = np.asarray(explanation.frame_indices)
    blended = overlay(explanation.frames, explanation.heatmap, alpha=0.45, floor=OVERLAY_FLOOR)
    picks = np.unique(np.round(np.linspace(0, len(blended) - 1, min(n, len(blended)))).astype(int))
    cam_axes = []
    for j in range(n):
        ax = fig.add_subplot(grid[1, j])
        ax.set_xticks([])
        ax.set_yticks([])
        cam_axes.append(ax)
        if j >= len(picks):
            ax.set_visible(False)
            continue
        i = picks[j]
        ax.imshow(blended[i], interpolation="nearest")
        ax.set_title("padding (past the end)" if idx[i] < 0 else when(int(idx[i])), fontsize=9)
    stage_note = " (empty at every stage tried: no region pushes the EF up)" if report.cam_empty else ""
    row2 = cam_axes[0].get_position()
    fig.text(0.5, row2.y1 + 0.035, f"Grad-CAM at stage {report.stage} of the clip from frame {report.cam_start}, "
             "as the model sees it;\nred = regions that push the EF up, dark blue = none "
             f"(one scale for the whole clip){stage_note}", ha="center", va="bottom", fontsize=9)

    bars_ax = fig.add_subplot(grid[2, :2])
    efs = np.asarray(pred.clip_efs, np.float64).reshape(-1)
    x = np.arange(1, len(efs) + 1)
    many = len(efs) > 12
    if pred.ef_low is not None:
        bars_ax.axhspan(pred.ef_low, pred.ef_high, color="0.6", alpha=0.35, lw=0, zorder=0,
                        label=f"{100 * pred.coverage:.0f}% interval {pred.ef_low:.1f}–{pred.ef_high:.1f} %")
    bars = bars_ax.bar(x, efs, width=0.6, color="tab:blue", zorder=2, label="EF of each clip")
    if not many:
        bars_ax.bar_label(bars, labels=[f"{v:.1f}" for v in efs], label_type="center", color="white", fontsize=8,
                          fontweight="bold")
        bars_ax.set_xticks(x, [str(s) for s in pred.starts], fontsize=8)
        bars_ax.set_xlabel("clip (first frame)")
    else:
        bars_ax.set_xlabel("clip")
    bars_ax.axhline(pred.ef, color="black", lw=2.0, zorder=3, label=f"video EF (mean) {pred.ef:.1f} %")
    bars_ax.set_ylim(0, 100)
    bars_ax.set_ylabel("EF (%)")
    title = "EF of each clip and the video's EF"
    if pred.ef_low is None:
        title += "\n(not calibrated: no interval)"
    bars_ax.set_title(title, fontsize=10)
    bars_ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=8, frameon=False)

    text_ax = fig.add_subplot(grid[2, 2:])
    text_ax.axis("off")
    lines = [(f"EF {pred.ef:.1f} %  (mean of {len(efs)} clip{'s' if len(efs) != 1 else ''}, SD {pred.ef_std:.1f})",
              "black", 12, "bold"),
             (_interval_text(pred), "black", 9, "normal"),
             ("distribution shift: " + shift_verdict(pred, report.shift_threshold),
              "tab:red" if pred.is_shifted else "black", 9, "normal"),
             (f"model: {_mpl(display_name(report.model))}   licence: {_mpl(report.license)}", "black", 9, "normal"),
             (f"video: {pred.n_frames} frames" + (f" at {pred.fps:.4g} fps" if pred.fps else "")
              + (f"; {len(pred.warnings)} note(s) on the HTML page" if pred.warnings else ""), "black", 9, "normal"),
             (CLINICAL_NOTICE.upper().split(":")[0] + ": research tool only", "tab:red", 11, "bold")]
    y = 1.0
    for text, colour, size, weight in lines:
        wrapped = textwrap.fill(text, width=62 if size <= 9 else 50)
        text_ax.text(0.0, y, wrapped, transform=text_ax.transAxes, va="top", ha="left", fontsize=size,
                     color=colour, fontweight=weight)
        y -= 0.075 * (wrapped.count("\n") + 1) * (size / 9) + 0.05
    fig.suptitle(f"coreecho report: {_mpl(report.name)}", fontsize=12, y=0.985)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    return p


def report_html(report: Report, png: bytes | None = None) -> str:
    """The HTML page: the figure embedded (base64, when given) and every number as text; all outside text
    escaped."""
    e = lambda v: html.escape(str(v), quote=True)  # noqa: E731
    pred = report.prediction
    rows = [("file", e(report.name)),
            ("EF (mean of the clips)", f"{pred.ef:.2f} %"),
            ("spread of the clip EFs (SD)", f"{pred.ef_std:.2f}"),
            ("interval", e(_interval_text(pred))),
            ("distribution shift", e(shift_verdict(pred, report.shift_threshold))),
            ("frames, frame rate", f"{pred.n_frames}, " + (f"{pred.fps:.4g} fps" if pred.fps else "unknown")),
            ("fan crop (top, bottom, left, right)", e(report.fan_box) if report.fan_box else "none (whole frame)"),
            ("Grad-CAM", f"stage {e(report.stage)}, clip from frame {report.cam_start}"
             + (" (empty map)" if report.cam_empty else "")),
            ("model", e(report.model)), ("licence of the weights", e(report.license))]
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    clips = "\n".join(f"<tr><td>{k}</td><td>{int(s)}</td><td>{float(v):.2f}</td></tr>"
                      for k, (s, v) in enumerate(zip(pred.starts, np.asarray(pred.clip_efs).reshape(-1)), 1))
    notes = "".join(f"<li>{e(w)}</li>" for w in pred.warnings)
    image = (f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" '
             f'alt="coreecho report figure of {e(report.name)}">' if png else "")
    from coreecho._version import __version__  # noqa: PLC0415

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>coreecho report: {e(report.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}}
table{{border-collapse:collapse;margin:0.5em 0}}th,td{{border:1px solid #ccc;padding:3px 8px;text-align:left}}
th{{background:#f3f3f3;font-weight:normal}}.warn{{color:#b00;font-weight:bold}}img{{max-width:100%}}</style>
</head><body>
<h1>coreecho report: {e(report.name)}</h1>
<p class="warn">{e(CLINICAL_NOTICE)}</p>
<table>
{table}
</table>
<h2>Clips</h2>
<table><tr><th>clip</th><th>first frame</th><th>EF (%)</th></tr>
{clips}
</table>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
{image}
<p>Made by coreecho {e(__version__)}. The page names the video by its file name only.</p>
</body></html>
"""


def build_report(video: Any, model: Any = None, output: str | os.PathLike | None = None, *,
                 model_name: str | None = None, clips: int | str | None = None, precision: str = "fp32",
                 device: str | None = None, stage: str | None = None, figure: bool = True) -> Report:
    """Predict, explain and write the report of one video.

    Args:
        video: a path (AVI/MP4/DICOM/``.npy``) or an array of frames.
        model: a :class:`~coreecho.CoReEcho` or a name/path for :func:`coreecho.load_model`
            (default ``"coreecho-echonet"``).
        output: folder or file stem, see :func:`report_paths`.
        model_name: the name shown (default: ``model`` when it is a string).
        clips, precision: as in :func:`coreecho.predict_ef`.
        device: where to run when ``model`` is a name.
        stage: Grad-CAM stage (default: the first of :data:`REPORT_STAGES` with a non-empty map).
        figure: write the PNG and HTML (``False``: compute only).

    Returns:
        A :class:`Report` (``figure``/``html`` are the files written).
    """
    from coreecho.inference import DEFAULT_MODEL, get_model  # noqa: PLC0415

    net = get_model(model, device)
    shown_model = model_name or (str(model) if isinstance(model, (str, os.PathLike)) else None) or \
        (DEFAULT_MODEL if model is None else type(net).__name__)
    pred = net.predict_ef(video, clips=clips, precision=precision, return_details=True)
    if isinstance(video, (str, os.PathLike)):  # the page names the file, never its folders
        pred.warnings = [str(w).replace(str(video), display_name(video)) for w in pred.warnings]
    frames, picks, info, box = _sample_frames(net, video, _FRAMES_SHOWN)
    ex = _explain(net, video, stage)
    detector = getattr(net, "shift_detector", None)
    report = Report(name=display_name(video), model=shown_model, license=str(net.config.license), prediction=pred,
                    shift_threshold=getattr(detector, "threshold", None), fan_box=box,
                    frame_size=(info.height, info.width), shown_frames=picks, stage=ex.stage, cam_start=ex.start,
                    cam_empty=ex.empty)
    if figure:
        png_path, html_path = report_paths(output, video)
        plot_report(png_path, report, frames, ex, fps=info.fps)
        report.figure = png_path
        html_path.write_text(report_html(report, png_path.read_bytes()), encoding="utf-8")
        report.html = html_path
    return report
