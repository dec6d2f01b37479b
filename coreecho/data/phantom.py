"""Synthetic apical-four-chamber echo cines with a known ejection fraction.

:func:`make_phantom` draws a B-mode-like cine: a fan-shaped sector, temporally correlated multiplicative
speckle (Rayleigh amplitude of a complex Gaussian field), bright myocardium, dark left/right ventricles and
atria, a mitral valve line in systole, depth attenuation, a random gain and a small random pose. The left
ventricle (LV) is a bullet shape (half-ellipse at the apex, slightly tapered towards the base) whose long
axis and width follow a cardiac cycle; the apex stays put and the base moves, as in real hearts.

Volumes use the single-plane **method of disks**: the LV is traced on the end-diastolic (ED) and
end-systolic (ES) frames as EchoNet-Dynamic's VolumeTracings are, the long axis first, then ``N = 20``
short-axis chords perpendicular to it at the centres of N equal slabs, and

    V = sum_i pi * (d_i / 2)**2 * L / N,

with ``L`` the long-axis length and ``d_i`` the chord lengths (:func:`volume_from_tracing`). ``meta.edv``
and ``meta.esv`` are that formula applied to the traced outlines (pixels converted to cm with the depth), so
``meta.ef = 100 (EDV - ESV) / EDV`` equals the requested EF up to floating-point rounding: the ES outline
is the ED outline scaled by ``(1 - a_L)`` along the axis and ``(1 - a_W)`` across it, and the volume
ratio ``(1 - a_L)(1 - a_W)**2`` is set to ``1 - EF/100``. The cycle period is a whole number of frames and
the ED and ES instants fall on frames, so every cycle of the cine has the same ED and ES volumes.

EDV is drawn independently of the EF and the imaging depth follows the heart's size (as a sonographer
sets it), so a single frame does not reveal the EF.

:func:`coreecho.data.layouts.write_echonet_layout` writes such cines in EchoNet-Dynamic's layout (``FileList.csv``,
``VolumeTracings.csv`` and ``Videos/*.avi``); :mod:`coreecho.data.layouts` holds every on-disk writer.

Example:
    >>> frames, meta = make_phantom(ef=40.0, seed=1, n_frames=80, fps=50, heart_rate=75)
    >>> frames.dtype, frames.shape, round(meta.ef, 6)
    (dtype('uint8'), (80, 112, 112, 3), 40.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from coreecho._deprecation import deprecated_aliases
from coreecho.errors import InputError

__all__ = [
    "PhantomMeta",
    "make_phantom",
    "volume_from_tracing",
    "FILELIST_COLUMNS",
    "TRACING_COLUMNS",
    "N_CHORDS",
]

#: Columns of EchoNet-Dynamic's FileList.csv, in order.
FILELIST_COLUMNS: tuple[str, ...] = (
    "FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS", "NumberOfFrames", "Split",
)
#: Columns of EchoNet-Dynamic's VolumeTracings.csv, in order.
TRACING_COLUMNS: tuple[str, ...] = ("FileName", "X1", "Y1", "X2", "Y2", "Frame")
#: Short-axis chords per traced frame (EchoNet-Dynamic traces have 20 plus the long axis).
N_CHORDS: int = 20

_TAPER_START = 0.55  # fraction of the long axis where the apical half-ellipse meets the tapered base


@dataclass
class PhantomMeta:
    """Ground truth of a phantom cine.

    Attributes:
        ef: ejection fraction (%), ``100 (edv - esv) / edv`` from the traced outlines.
        edv: end-diastolic volume (mL), method of disks on the ED tracing.
        esv: end-systolic volume (mL), method of disks on the ES tracing.
        fps: frames per second.
        n_frames: number of frames.
        heart_rate: beats per minute (adjusted so that a cycle is a whole number of frames).
        period_frames: frames per cardiac cycle.
        ed_frames: every end-diastolic frame in the cine.
        es_frames: every end-systolic frame in the cine.
        traced_frames: ``(ed_frame, es_frame)``, the pair whose outlines are in ``tracings``.
        tracings: frame -> ``(1 + N_CHORDS, 4)`` array of lines ``(X1, Y1, X2, Y2)`` in pixel coordinates
            (x = column, y = row): the long axis (apex to base midpoint) first, then the chords.
        cm_per_pixel: pixel size (cm) used for the volumes.
        depth_cm: imaging depth (fan radius) in cm.
        seed: the seed.
        params: the other drawn parameters (pose, gain, geometry).
        lv_volume: LV volume (mL) of every frame, method of disks on that frame's outline.
        lv_area: LV cavity area (pixels²) of every frame, from the same outline (chord lengths × spacing).
    """

    ef: float
    edv: float
    esv: float
    fps: float
    n_frames: int
    heart_rate: float
    period_frames: int
    ed_frames: list[int]
    es_frames: list[int]
    traced_frames: tuple[int, int]
    tracings: dict[int, np.ndarray]
    cm_per_pixel: float
    depth_cm: float
    seed: int
    params: dict[str, float] = field(default_factory=dict)
    lv_volume: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lv_area: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (tracings as nested lists, frame keys as ints).

        Example:
            >>> _, meta = make_phantom(ef=50.0, seed=0, n_frames=60, fps=50, heart_rate=75)
            >>> sorted(meta.to_dict())[:3]
            ['cm_per_pixel', 'depth_cm', 'ed_frames']
        """
        d = asdict(self)
        d["tracings"] = {int(k): np.asarray(v).tolist() for k, v in self.tracings.items()}
        d["traced_frames"] = list(self.traced_frames)
        d["lv_volume"] = np.asarray(self.lv_volume).tolist()
        d["lv_area"] = np.asarray(self.lv_area).tolist()
        return d


# ----------------------------------------------------------------------------------------------------------
# geometry


def _profile(s: np.ndarray) -> np.ndarray:
    """LV half-width (fraction of the maximum) at fraction ``s`` of the long axis from the apex (0) to the base (1)."""
    s = np.asarray(s, dtype=np.float64) if not isinstance(s, np.ndarray) else s
    c = _TAPER_START
    apical = np.sqrt(np.clip(1.0 - (1.0 - s / c) ** 2, 0.0, None))
    basal = 1.0 - 0.2 * ((s - c) / (1.0 - c)) ** 2
    out = np.where(s < c, apical, basal)
    return np.where((s >= 0.0) & (s <= 1.0), out, 0.0)


def _disk_factor(n: int = N_CHORDS) -> float:
    """mean_i profile(s_i)^2 over the disk centres, so that V = pi * b^2 * L * factor."""
    s = (np.arange(n) + 0.5) / n
    return float(np.mean(_profile(s) ** 2))


def volume_from_tracing(lines: Any, cm_per_pixel: float = 1.0) -> float:
    """Single-plane method-of-disks volume from a traced outline.

    Args:
        lines: ``(1 + N, 4)`` lines ``(X1, Y1, X2, Y2)``: the long axis first, then N short-axis chords.
        cm_per_pixel: pixel size; the result is in cm^3 (= mL) when given, in pixel^3 otherwise.

    Returns:
        ``sum_i pi (d_i / 2)^2 L / N`` scaled by ``cm_per_pixel**3``.

    Example:
        >>> import numpy as np
        >>> lines = np.array([[0, 0, 0, 10]] + [[-1, y, 1, y] for y in range(10)], float)
        >>> round(volume_from_tracing(lines), 6)  # a cylinder of radius 1 and length 10
        31.415927
    """
    a = np.asarray(lines, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 4 or a.shape[0] < 2:
        raise InputError("tracing", f"expected (1 + N, 4) lines with N >= 1, got shape {a.shape}")
    length = float(np.hypot(a[0, 2] - a[0, 0], a[0, 3] - a[0, 1]))
    d = np.hypot(a[1:, 2] - a[1:, 0], a[1:, 3] - a[1:, 1])
    n = len(d)
    return float(np.sum(np.pi * (d / 2.0) ** 2) * length / n) * cm_per_pixel**3


def _contraction(phase: np.ndarray, systole: float) -> np.ndarray:
    """0 at end-diastole (phase 0), 1 at end-systole (phase ``systole``), smooth cosine ramps in between."""
    up = 0.5 * (1.0 - np.cos(np.pi * phase / systole))
    down = 0.5 * (1.0 + np.cos(np.pi * (phase - systole) / (1.0 - systole)))
    return np.where(phase < systole, up, down)


def _draw_range(rng: np.random.Generator, spec: Any, name: str, integer: bool = False) -> float:
    """Draw from ``(lo, hi)``; always consumes one draw so options do not shift later draws."""
    if isinstance(spec, (tuple, list)) and len(spec) == 2:
        lo, hi = float(spec[0]), float(spec[1])
        if hi < lo:
            raise InputError(f"{name}={spec!r}", "the range must be (low, high) with low <= high")
        u = rng.random()
        return float(int(np.floor(lo + u * (hi - lo + 1)))) if integer else lo + u * (hi - lo)
    rng.random()
    try:
        return float(spec)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}={spec!r}", "expected a number or a (low, high) range") from exc


# ----------------------------------------------------------------------------------------------------------
# rendering helpers


def _smooth(z: np.ndarray, axis: int, passes: int) -> np.ndarray:
    """[1, 2, 1] / 4 smoothing along an axis, ``passes`` times (edges replicate)."""
    for _ in range(passes):
        lo = np.concatenate([np.take(z, [0], axis=axis), np.take(z, np.arange(z.shape[axis] - 1), axis=axis)], axis=axis)
        hi = np.concatenate([np.take(z, np.arange(1, z.shape[axis]), axis=axis), np.take(z, [-1], axis=axis)], axis=axis)
        z = 0.5 * z + 0.25 * (lo + hi)
    return z


def _bullet(u: np.ndarray, v: np.ndarray, apex: np.ndarray, length: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Inside a bullet shape: apex at axial ``apex``, ``length`` long, ``half`` maximal half-width."""
    s = (u - apex) / length
    return (s >= 0.0) & (s <= 1.0) & (np.abs(v) <= half * _profile(s))


def _ellipse(u: np.ndarray, v: np.ndarray, uc: np.ndarray, vc: float, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((u - uc) / a) ** 2 + ((v - vc) / b) ** 2 <= 1.0


# ----------------------------------------------------------------------------------------------------------
# the phantom


def make_phantom(
    ef: float | None = None,
    seed: int = 0,
    *,
    n_frames: int | tuple[int, int] = (100, 200),
    fps: float | None = None,
    heart_rate: float | tuple[float, float] = (50.0, 110.0),
    edv: float | tuple[float, float] = (50.0, 170.0),
    size: int = 112,
    depth_cm: float | None = None,
    gain: float | tuple[float, float] = (0.8, 1.2),
    rotation_deg: float | tuple[float, float] = (-8.0, 8.0),
    shift_px: float | tuple[float, float] = (-4.0, 4.0),
    speckle: float = 1.0,
    noise: float = 2.0,
) -> tuple[np.ndarray, PhantomMeta]:
    """An apical-four-chamber-like B-mode cine with a known EF.

    Every random choice comes from ``seed``; each option given explicitly replaces its draw without
    changing the others. Ranges ``(low, high)`` are drawn uniformly.

    Args:
        ef: ejection fraction in % (exact, within float rounding, for 1..95); drawn from 10..85 when None.
        seed: the seed.
        n_frames: number of frames, or a range (the default range makes some cines shorter than 144
            frames, which exercises the clip zero padding).
        fps: frames per second; drawn near 50 (normal, sd 3, rounded, clipped to 40..60) when None.
        heart_rate: beats per minute (rounded so that a cycle is a whole number of frames).
        edv: end-diastolic volume in mL.
        size: frame side in pixels (the geometry scales with it).
        depth_cm: imaging depth; by default set so the LV spans 48-60 % of the fan radius.
        gain: overall brightness factor.
        rotation_deg: rotation of the heart about the LV apex.
        shift_px: translation of the heart (both axes, in 112-pixel units).
        speckle: 0 (none) .. 1 (fully developed speckle).
        noise: standard deviation of additive noise (grey levels).

    Returns:
        ``(frames, meta)``: ``uint8`` ``[n_frames, size, size, 3]`` (grey in 3 channels) and a
        :class:`PhantomMeta`.

    Raises:
        InputError: an EF outside 1..95, fewer frames than one systole needs, non-positive fps/size.

    Example:
        >>> frames, meta = make_phantom(ef=62.5, seed=3, n_frames=64, fps=48, heart_rate=80)
        >>> round(meta.ef, 4), meta.traced_frames == (meta.ed_frames[0], meta.es_frames[0])
        (62.5, True)
    """
    rng = np.random.default_rng(seed)
    # --- parameters (fixed draw order) -------------------------------------------------------------
    ef_v = _draw_range(rng, (10.0, 85.0) if ef is None else ef, "ef")
    n = int(_draw_range(rng, n_frames, "n_frames", integer=True))
    fps_draw = float(np.clip(np.round(50.0 + 3.0 * rng.standard_normal()), 40, 60))
    fps_v = fps_draw if fps is None else float(fps)
    hr_v = _draw_range(rng, heart_rate, "heart_rate")
    edv_v = _draw_range(rng, edv, "edv")
    gain_v = _draw_range(rng, gain, "gain")
    rot_v = _draw_range(rng, rotation_deg, "rotation_deg")
    sx = _draw_range(rng, shift_px, "shift_px")
    sy = _draw_range(rng, shift_px, "shift_px")
    long_share = rng.uniform(0.25, 0.45)  # share of the volume change due to long-axis shortening
    systole_frac = rng.uniform(0.32, 0.38)
    ed_u = rng.random()
    aspect = rng.uniform(3.2, 3.8)  # LV length / maximal half-width
    length_frac = rng.uniform(0.48, 0.60)  # LV length / fan radius
    wall_frac = rng.uniform(0.11, 0.14)  # wall thickness / LV length
    fan_half_deg = rng.uniform(38.0, 44.0)
    fan_frac = rng.uniform(0.90, 0.96)
    tilt_deg = rng.uniform(3.0, 9.0)
    rv_w, rv_l = rng.uniform(0.65, 0.85), rng.uniform(0.75, 0.9)
    la_a, ra_a = rng.uniform(0.28, 0.36), rng.uniform(0.25, 0.32)
    tissue, myo, blood = rng.uniform(35, 55), rng.uniform(140, 175), rng.uniform(4, 12)
    noise_seed = int(rng.integers(2**63))

    if not (1.0 <= ef_v <= 95.0):
        raise InputError(f"ef={ef}", "the phantom supports ejection fractions from 1 to 95 %")
    if size < 16:
        raise InputError(f"size={size}", "must be at least 16 pixels")
    if not (np.isfinite(fps_v) and fps_v > 0) or not (np.isfinite(hr_v) and hr_v > 0):
        raise InputError(f"fps={fps}, heart_rate={heart_rate}", "must be positive")
    if not (np.isfinite(edv_v) and edv_v > 0):
        raise InputError(f"edv={edv}", "must be a positive volume in mL")

    # --- timing -------------------------------------------------------------------------------------
    period = max(3, int(round(fps_v * 60.0 / hr_v)))
    hr_eff = 60.0 * fps_v / period
    sys_frames = min(period - 1, max(1, int(round(systole_frac * period))))
    systole = sys_frames / period
    if n < sys_frames + 1:
        raise InputError(
            f"n_frames={n}",
            f"too short: at {hr_eff:.1f} bpm and {fps_v:g} fps systole lasts {sys_frames} frames, so the cine "
            f"needs at least {sys_frames + 1} frames to hold an ED and an ES frame",
        )
    ed0 = int(np.floor(ed_u * min(period, n - sys_frames)))
    t = np.arange(n)
    phase_idx = (t - ed0) % period  # frames with equal phase_idx are identical in geometry
    phases = np.arange(period) / period
    contr = _contraction(phases, systole)  # per phase index
    contr[0], contr[sys_frames] = 0.0, 1.0

    # --- geometry (pixels of a size x size frame) ---------------------------------------------------
    k = size / 112.0
    ratio = 1.0 - ef_v / 100.0
    keep_l = ratio**long_share
    keep_w = ratio ** ((1.0 - long_share) / 2.0)
    factor = _disk_factor()
    b_cm = (edv_v / (np.pi * factor * aspect)) ** (1.0 / 3.0)
    l_cm = aspect * b_cm
    radius = fan_frac * size
    if depth_cm is None:
        cm_px = l_cm / (length_frac * radius)
        depth = cm_px * radius
    else:
        depth = float(depth_cm)
        if not (np.isfinite(depth) and depth > 0):
            raise InputError(f"depth_cm={depth_cm}", "must be a positive depth in cm")
        cm_px = depth / radius
    l_ed, b_ed = l_cm / cm_px, b_cm / cm_px
    wall = wall_frac * l_ed
    length = l_ed * (1.0 - (1.0 - keep_l) * contr)  # per phase
    half = b_ed * (1.0 - (1.0 - keep_w) * contr)

    apex_probe = np.array([size / 2.0, 1.0 * k])
    theta = np.deg2rad(tilt_deg + rot_v)
    axis = np.array([np.sin(theta), np.cos(theta)])  # (x, y), pointing from the apex to the base
    normal = np.array([np.cos(theta), -np.sin(theta)])  # towards the image right (LV lateral wall)
    lv_apex = apex_probe + np.array([0.06 * size + sx * k, wall + 0.05 * size + sy * k])

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)  # pixel centres at integer (x = column, y = row)
    du, dv = xx - lv_apex[0], yy - lv_apex[1]
    u = (du * axis[0] + dv * axis[1])[None]  # along the LV axis
    v = (du * normal[0] + dv * normal[1])[None]  # across it
    L = length[:, None, None].astype(np.float32)
    B = half[:, None, None].astype(np.float32)
    c = contr[:, None, None].astype(np.float32)

    img = np.full((period, size, size), tissue, dtype=np.float32)
    # right heart: RV beside the LV (septum between), RA below it; left atrium below the LV
    rv_off = -(b_ed + wall + rv_w * b_ed)
    rv_len = rv_l * l_ed * (1.0 - 0.5 * (1.0 - keep_l) * c)
    rv_half = rv_w * b_ed * (1.0 - 0.5 * (1.0 - keep_w) * c)
    la_a_t = la_a * l_ed * (1.0 + 0.12 * c)
    la_b_t = 0.9 * b_ed * (1.0 + 0.12 * c)
    ra_a_t = ra_a * l_ed * (1.0 + 0.12 * c)
    ra_b_t = 0.9 * rv_w * b_ed * (1.0 + 0.12 * c)
    la_c = L + 0.5 * wall + la_a_t
    ra_c = L + 0.5 * wall + ra_a_t
    walls = (
        _bullet(u, v, -wall, L + wall, B + wall)
        | _bullet(u, v - rv_off, L - rv_len - 0.5 * wall, rv_len + 0.5 * wall, rv_half + 0.5 * wall)
        | _ellipse(u, v, la_c, 0.1 * b_ed, la_a_t + 0.4 * wall, la_b_t + 0.4 * wall)
        | _ellipse(u, v, ra_c, rv_off, ra_a_t + 0.4 * wall, ra_b_t + 0.4 * wall)
    )
    img[walls] = myo
    cavities = (
        _bullet(u, v, 0.0, L, B)
        | _bullet(u, v - rv_off, L - rv_len, rv_len, rv_half)
        | _ellipse(u, v, la_c, 0.1 * b_ed, la_a_t, la_b_t)
        | _ellipse(u, v, ra_c, rv_off, ra_a_t, ra_b_t)
    )
    img[cavities] = blood
    # closed mitral valve during systole: a bright line across the LV base
    closed = (phases > 0.02) & (phases < systole + 0.03)
    valve = (np.abs(u - L) <= 0.8 * k) & (np.abs(v) <= B * 0.85) & closed[:, None, None]
    img[valve] = 0.9 * myo
    img = _smooth(_smooth(img, 1, 1), 2, 1)

    # --- fan, attenuation ---------------------------------------------------------------------------
    fx, fy = xx - apex_probe[0], yy - apex_probe[1]
    r = np.hypot(fx, fy)
    ang = np.degrees(np.arctan2(fx, fy))
    fan = (r <= radius) & (np.abs(ang) <= fan_half_deg) & (r >= 1.5 * k)
    atten = np.exp(-0.45 * r / radius).astype(np.float32) * 1.25

    # --- speckle (complex Gaussian, AR(1) in time, smoothed in space) and noise ---------------------
    nrng = np.random.default_rng(noise_seed)
    frames = img[phase_idx] * (atten * gain_v)[None]
    if speckle > 0:
        rho = 0.85
        z = nrng.standard_normal((n, size, size), dtype=np.float32) + 1j * nrng.standard_normal(
            (n, size, size), dtype=np.float32)
        z = z.astype(np.complex64)
        scale = np.float32(np.sqrt(1.0 - rho * rho))
        for i in range(1, n):
            z[i] = rho * z[i - 1] + scale * z[i]
        z = _smooth(_smooth(z, 2, 2), 1, 1)
        amp = np.abs(z)
        amp /= amp.mean()
        frames *= (1.0 - speckle) + speckle * amp
    if noise > 0:
        frames += nrng.standard_normal(frames.shape, dtype=np.float32) * np.float32(noise)
    frames *= fan[None]
    out = np.repeat(np.clip(np.rint(frames), 0, 255).astype(np.uint8)[..., None], 3, axis=-1)

    # --- tracings and volumes -----------------------------------------------------------------------
    def tracing(pi: int) -> np.ndarray:
        lp, bp = float(length[pi]), float(half[pi])
        base = lv_apex + lp * axis
        rows = [[lv_apex[0], lv_apex[1], base[0], base[1]]]
        for i in range(N_CHORDS):
            s = (i + 0.5) / N_CHORDS
            centre = lv_apex + s * lp * axis
            w = bp * float(_profile(np.array(s)))
            p1, p2 = centre - w * normal, centre + w * normal
            rows.append([p1[0], p1[1], p2[0], p2[1]])
        return np.asarray(rows, dtype=np.float64)

    ed_frame, es_frame = ed0, ed0 + sys_frames
    tr_ed, tr_es = tracing(0), tracing(sys_frames)
    edv_m = volume_from_tracing(tr_ed, cm_px)
    esv_m = volume_from_tracing(tr_es, cm_px)
    outlines = [tracing(pi) for pi in range(period)]
    vol_phase = np.array([volume_from_tracing(o, cm_px) for o in outlines])
    area_phase = np.array([np.hypot(o[1:, 2] - o[1:, 0], o[1:, 3] - o[1:, 1]).sum()
                           * np.hypot(o[0, 2] - o[0, 0], o[0, 3] - o[0, 1]) / N_CHORDS for o in outlines])
    meta = PhantomMeta(
        ef=100.0 * (edv_m - esv_m) / edv_m,
        edv=edv_m,
        esv=esv_m,
        fps=fps_v,
        n_frames=n,
        heart_rate=hr_eff,
        period_frames=period,
        ed_frames=list(range(ed_frame, n, period)),
        es_frames=list(range(es_frame, n, period)),
        traced_frames=(ed_frame, es_frame),
        tracings={ed_frame: tr_ed, es_frame: tr_es},
        cm_per_pixel=float(cm_px),
        depth_cm=float(depth),
        seed=int(seed),
        params={
            "gain": gain_v, "rotation_deg": rot_v, "shift_x_px": sx, "shift_y_px": sy,
            "fan_half_angle_deg": fan_half_deg, "fan_radius_px": radius, "systole_frames": sys_frames,
            "lv_length_ed_px": l_ed, "lv_half_width_ed_px": b_ed, "wall_px": wall,
            "long_axis_shortening": 1.0 - keep_l, "width_shortening": 1.0 - keep_w,
        },
        lv_volume=vol_phase[phase_idx],
        lv_area=area_phase[phase_idx],
    )
    return out, meta


# ----------------------------------------------------------------------------------------------------------
# EchoNet-Dynamic layout


#: Writers that moved to :mod:`coreecho.data.layouts` (old names kept, deprecated, for one release).
__getattr__ = deprecated_aliases(__name__, {"write_echonet_layout": "coreecho.data.layouts",
                                           "write_dicom": "coreecho.data.layouts"})
