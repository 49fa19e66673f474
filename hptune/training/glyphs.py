"""Glyphs: a bundled image problem generated from a seed (no download, nothing stored).

Ten digit-like glyphs, each a few stroke polylines written out below in a
unit box (x from −0.6 to 0.6, y from −1 at the top to 1 at the bottom), are
drawn into size × size images as a hand would write them, differently each
time:
  - the strokes are bent by a smooth random warp (a sum of two low-frequency
    sine waves, up to WARP of the glyph's height), then
  - put through a random affine map: height SCALE · size, width × ASPECT,
    rotation up to ROTATION, shear up to SHEAR, centred at a random point
    that keeps the glyph's middle well inside the image (it may be cut at the
    border), and
  - rasterized with a random stroke half-width (STROKE px), anti-aliased: a
    pixel's ink is clip(w + 0.5 − d, 0, 1) for its distance d to the stroke,
    times a random ink level;
  - then clutter: CLUTTER_MAX random short strokes (line pieces with a random
    bend) anywhere in the image, as thick as the glyph's, fainter or as dark,
  - a random background level and linear gradient, and
  - Gaussian pixel noise (NOISE, relative to full ink).
Values are roughly 0 (paper) to 1 (ink), not clipped. The classes are
balanced: exactly samples // 10 of each (the first samples % 10 classes get
one more), in random order.

The geometry is what makes the problem hard for an MLP and not for a conv net:
the same stroke lands on different pixels every time (translation of up to a
third of the image, rotation, scale, warp), so a fully connected layer has to
learn every placement separately while a convolution shares one detector over
all of them. Clutter strokes are made of the same pieces as the glyphs, so
"is there ink here" is not enough either.

    X, y = generate(seed=0)                  # (6000, 1, 16, 16) float32, (6000,) int64

`data: {dataset: glyphs}` in a config: split and standardized like any dataset
(`hptune.training.data`), as images for `model: cnn` and as rows of 256 pixels for an MLP.
"""

from __future__ import annotations

import math

import numpy as np

from .dataspec import SAMPLES, DataConfig

N_CLASSES = 10
DEFAULT_SAMPLES = SAMPLES["glyphs"]
DEFAULT_SIZE = DataConfig.image_size  # the config's default side

# Random drawing parameters (ranges are uniform unless said otherwise).
SCALE = (0.50, 0.75)  # glyph height, as a share of the image side
ASPECT = (0.75, 1.25)  # width multiplier
ROTATION = math.radians(20)  # ± rotation
SHEAR = 0.3  # ± horizontal shear
SHIFT = 0.22  # ± centre offset, as a share of the image side
WARP = 0.06  # amplitude of each of the two sine warps, in glyph units (height 2)
STROKE = (0.45, 1.1)  # stroke half-width in px (at size 16; scaled with size)
INK = (0.6, 1.0)  # ink level of the glyph
CLUTTER_MAX = 3  # 0 .. CLUTTER_MAX clutter strokes per image
CLUTTER_LENGTH = (0.25, 0.6)  # clutter stroke length, as a share of the image side
BACKGROUND = (0.0, 0.25)  # paper level
GRADIENT = 0.25  # ± change of the paper level across the image
NOISE = 0.18  # std of the Gaussian pixel noise

# Images rendered at a time: bounds the (chunk, segments, H·W) distance arrays (~25 MB at 16 px).
_CHUNK = 512


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int) -> list[tuple[float, float]]:
    """Points on an ellipse from angle a0 to a1 (degrees; 0 = right, 90 = down)."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(a0, a1, n + 1)
    ]


# Each glyph: a list of polylines in the unit box (x −0.6..0.6, y −1 top .. 1 bottom).
GLYPHS: tuple[tuple[tuple[tuple[float, float], ...], ...], ...] = (
    # 0: an oval
    (tuple(_arc(0.0, 0.0, 0.5, 0.92, 0, 360, 12)),),
    # 1: a flag, a stem and a foot
    (((-0.3, -0.6), (0.05, -0.95), (0.05, 0.95)), ((-0.3, 0.95), (0.4, 0.95))),
    # 2: a top hook, a diagonal, a base
    (tuple(_arc(0.0, -0.45, 0.48, 0.48, 190, 360, 5)) + ((0.45, -0.2), (-0.5, 0.95), (0.55, 0.95)),),
    # 3: two right-hand bowls
    (tuple(_arc(0.0, -0.5, 0.48, 0.45, 200, 450, 6)), tuple(_arc(0.0, 0.45, 0.5, 0.5, 270, 520, 6))),
    # 4: a diagonal down to a crossbar, and a stem
    (((0.2, -0.95), (-0.55, 0.35), (0.55, 0.35)), ((0.3, -0.35), (0.3, 0.95))),
    # 5: a top bar, a left drop, a lower bowl
    (((0.5, -0.95), (-0.35, -0.95), (-0.45, -0.1)) + tuple(_arc(0.0, 0.4, 0.5, 0.55, 230, 500, 7)),),
    # 6: a long left curve into a lower loop
    (((0.35, -0.95), (-0.2, -0.5), (-0.48, 0.2)) + tuple(_arc(0.0, 0.45, 0.48, 0.48, 180, 540, 8)),),
    # 7: a top bar and a long diagonal
    (((-0.5, -0.95), (0.55, -0.95), (-0.1, 0.95)),),
    # 8: two stacked loops
    (tuple(_arc(0.0, -0.5, 0.38, 0.42, 0, 360, 8)), tuple(_arc(0.0, 0.45, 0.5, 0.5, 0, 360, 8))),
    # 9: an upper loop and a stem
    (tuple(_arc(0.0, -0.45, 0.48, 0.48, 0, 360, 8)), ((0.48, -0.45), (0.3, 0.95))),
)


def _segments() -> np.ndarray:
    """(10, S, 2, 2): each glyph's segments (start, end) as (x, y), padded by repeating its last segment."""
    per_glyph = []
    for lines in GLYPHS:
        segs = [(a, b) for line in lines for a, b in zip(line[:-1], line[1:])]
        per_glyph.append(np.asarray(segs, dtype=np.float64))
    s_max = max(len(s) for s in per_glyph)
    out = np.empty((len(per_glyph), s_max, 2, 2))
    for k, segs in enumerate(per_glyph):
        out[k, : len(segs)] = segs
        out[k, len(segs) :] = segs[-1]
    return out


_SEGMENTS = _segments()


def _distance(segs: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Distance from every pixel centre to the nearest segment, per image.

    segs: (n, S, 2, 2) in pixel coordinates; px, py: (P,) pixel centres.
    Returns (n, P) float32.
    """
    segs = segs.astype(np.float32)
    ax, ay = segs[:, :, 0, 0, None], segs[:, :, 0, 1, None]  # (n, S, 1)
    dx, dy = segs[:, :, 1, 0, None] - ax, segs[:, :, 1, 1, None] - ay
    length2 = np.maximum(dx * dx + dy * dy, np.float32(1e-9))
    rx, ry = px - ax, py - ay  # (n, S, P)
    t = np.clip((rx * dx + ry * dy) / length2, 0.0, 1.0)
    ex, ey = rx - t * dx, ry - t * dy
    return np.sqrt((ex * ex + ey * ey).min(axis=1))


def generate(seed: int, samples: int = DEFAULT_SAMPLES, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """`samples` glyph images of size × size from `seed`: X float32 (N, 1, size, size), y int64 (N,).

    Equal arguments give identical arrays. Classes are balanced (see the
    module docstring for the drawing process).
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    rng = np.random.default_rng(seed)
    n = samples
    y = rng.permutation(np.arange(n) % N_CLASSES).astype(np.int64)
    u = lambda lo, hi, shape=(n,): rng.uniform(lo, hi, shape)  # noqa: E731

    # Glyph strokes in unit coordinates, bent by a smooth warp.
    segs = _SEGMENTS[y].copy()  # (n, S, 2, 2)
    freq = u(1.0, 2.5, (n, 2, 2))
    phase = u(0.0, 2 * math.pi, (n, 2, 2))
    amp = u(-WARP, WARP, (n, 2))
    x0, y0 = segs[..., 0].copy(), segs[..., 1].copy()
    segs[..., 0] += amp[:, 0, None, None] * np.sin(freq[:, 0, 0, None, None] * y0 * math.pi + phase[:, 0, 0, None, None])
    segs[..., 0] += amp[:, 1, None, None] * np.sin(freq[:, 1, 0, None, None] * x0 * math.pi + phase[:, 1, 0, None, None])
    segs[..., 1] += amp[:, 0, None, None] * np.sin(freq[:, 0, 1, None, None] * x0 * math.pi + phase[:, 0, 1, None, None])
    segs[..., 1] += amp[:, 1, None, None] * np.sin(freq[:, 1, 1, None, None] * y0 * math.pi + phase[:, 1, 1, None, None])

    # Affine map to pixels: unit height 2 -> SCALE · size px.
    half = u(*SCALE) * size / 2
    sx, sy = half * u(*ASPECT), half
    theta = u(-ROTATION, ROTATION)
    shear = u(-SHEAR, SHEAR)
    cos, sin = np.cos(theta), np.sin(theta)
    # A = R(θ) · [[1, shear], [0, 1]] · diag(sx, sy)
    a11, a12 = cos * sx, (cos * shear - sin) * sy
    a21, a22 = sin * sx, (sin * shear + cos) * sy
    cx = size / 2 + u(-SHIFT, SHIFT) * size
    cy = size / 2 + u(-SHIFT, SHIFT) * size
    ux, uy = segs[..., 0], segs[..., 1]
    segs = np.stack(
        [a11[:, None, None] * ux + a12[:, None, None] * uy + cx[:, None, None],
         a21[:, None, None] * ux + a22[:, None, None] * uy + cy[:, None, None]],
        axis=-1,
    )  # fmt: skip

    # Clutter: short strokes of two segments each, anywhere; unused ones are
    # moved far outside the image.
    n_clutter = rng.integers(0, CLUTTER_MAX + 1, n)
    length = u(*CLUTTER_LENGTH, (n, CLUTTER_MAX)) * size
    start = u(0, size, (n, CLUTTER_MAX, 2))
    angle = u(0, 2 * math.pi, (n, CLUTTER_MAX))
    bend = angle + u(-1.2, 1.2, (n, CLUTTER_MAX))
    mid = start + (length / 2)[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
    end = mid + (length / 2)[..., None] * np.stack([np.cos(bend), np.sin(bend)], -1)
    clutter = np.stack([np.stack([start, mid], -2), np.stack([mid, end], -2)], axis=2)  # (n, K, 2, 2, 2)
    clutter[np.arange(CLUTTER_MAX)[None, :] >= n_clutter[:, None]] = -1e3
    clutter = clutter.reshape(n, 2 * CLUTTER_MAX, 2, 2)

    width = u(*STROKE) * size / 16
    ink = u(*INK)
    clutter_ink = ink * u(0.5, 1.0)
    coords = np.arange(size, dtype=np.float32) + np.float32(0.5)
    py, px = (c.ravel() for c in np.meshgrid(coords, coords, indexing="ij"))

    X = np.empty((n, size * size), dtype=np.float32)
    for lo in range(0, n, _CHUNK):
        hi = min(lo + _CHUNK, n)
        w = width[lo:hi, None].astype(np.float32)
        glyph = np.clip(w + 0.5 - _distance(segs[lo:hi], px, py), 0.0, 1.0)
        extra = np.clip(w + 0.5 - _distance(clutter[lo:hi], px, py), 0.0, 1.0)
        X[lo:hi] = np.maximum(glyph * ink[lo:hi, None], extra * clutter_ink[lo:hi, None])

    # Paper: a level plus a linear gradient in a random direction, then noise.
    paper = u(*BACKGROUND)
    g_dir = u(0, 2 * math.pi)
    g_amp = u(-GRADIENT, GRADIENT)
    ramp = ((np.cos(g_dir)[:, None] * (px - size / 2) + np.sin(g_dir)[:, None] * (py - size / 2)) / size)
    X += (paper[:, None] + g_amp[:, None] * ramp).astype(np.float32)
    X += rng.standard_normal((n, size * size), dtype=np.float32) * np.float32(NOISE)
    return X.reshape(n, 1, size, size), y
