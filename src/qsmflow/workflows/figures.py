"""Headless figures for the QC report, drawn with Pillow (already installed with scikit-image).

Slices are shown pixel-true: each voxel becomes a block of screen pixels sized by its
millimetres (nearest neighbour, so no smoothing hides a defect), in the neurological
convention (the subject's right on the right; see ``three_views``).
"""

from __future__ import annotations

import base64
import io as _io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# colour maps as (position 0-1, RGB) anchors, interpolated linearly
_MAPS = {
    "gray": [(0, (0, 0, 0)), (1, (255, 255, 255))],
    "diverging": [(0, (33, 102, 172)), (0.5, (247, 247, 247)), (1, (178, 24, 43))],
    "hot": [(0, (0, 0, 0)), (0.4, (190, 30, 0)), (0.75, (255, 200, 0)), (1, (255, 255, 230))],
}
_PX_PER_MM = 1.6
_MIN_TILE_PX = 240
_BG = (255, 255, 255)
_INK = (30, 30, 30)


def _font(size: int = 13):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizing
        return ImageFont.load_default()


def colourise(img: np.ndarray, vmin: float, vmax: float, cmap: str = "gray") -> np.ndarray:
    """(H, W) values → (H, W, 3) uint8 through a colour map, clipped to [vmin, vmax]."""
    t = np.clip((np.nan_to_num(img) - vmin) / max(vmax - vmin, 1e-12), 0, 1)
    pos = [a[0] for a in _MAPS[cmap]]
    return np.stack([np.interp(t, pos, [a[1][c] for a in _MAPS[cmap]]) for c in range(3)], -1).astype(np.uint8)


# per view (the axis cut): caption and the letters at its (left, right, top, bottom) edges
_VIEWS = {2: ("axial", "LRAP"), 1: ("coronal", "LRSI"), 0: ("sagittal", "PASI")}
_OUTSIDE = (0, 0, 0)


def three_views(vol: np.ndarray, vs, centre, vmin, vmax, cmap="gray", outline=None, region=None) -> Image.Image:
    """Axial, coronal and sagittal slices through ``centre`` of a RAS volume, side by side,
    each captioned and lettered at its edges (L/R, A/P, S/I).

    Neurological convention: the subject's right on the right of the axial and coronal
    views, anterior up in the axial view and to the right in the sagittal one, superior
    up. ``outline`` (bool volume) is drawn in red; voxels outside ``region`` (bool volume)
    are black, so that a map's background is not mistaken for tissue.
    """
    extent_mm = np.asarray(vol.shape) * np.asarray(vs, float)
    scale = max(_PX_PER_MM, _MIN_TILE_PX / float(extent_mm.max()))  # small crops are enlarged
    tiles = []
    for axis in (2, 1, 0):
        sl = [slice(None)] * 3
        sl[axis] = int(centre[axis])
        img = vol[tuple(sl)]
        rgb = colourise(img, vmin, vmax, cmap)
        if region is not None:
            rgb[~region[tuple(sl)]] = _OUTSIDE
        if outline is not None:
            from skimage.segmentation import find_boundaries

            edge = find_boundaries(outline[tuple(sl)], mode="inner")
            rgb[edge] = (230, 20, 20)
        inplane = [a for a in range(3) if a != axis]
        rgb = np.flip(np.swapaxes(rgb, 0, 1), 0)  # rows: second in-plane axis, top = +
        w = max(1, int(round(rgb.shape[1] * vs[inplane[0]] * scale)))
        h = max(1, int(round(rgb.shape[0] * vs[inplane[1]] * scale)))
        tiles.append(_lettered(Image.fromarray(np.ascontiguousarray(rgb)).resize((w, h), Image.NEAREST), axis))
    gap, head = 6, 18
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + gap * 2, max(t.height for t in tiles) + head), _BG)
    draw, font = ImageDraw.Draw(canvas), _font()
    x = 0
    for t, axis in zip(tiles, (2, 1, 0)):
        caption = _VIEWS[axis][0]
        draw.text((x + (t.width - draw.textlength(caption, font=font)) / 2, 1), caption, fill=_INK, font=font)
        canvas.paste(t, (x, head + (canvas.height - head - t.height) // 2))
        x += t.width + gap
    return canvas


def _lettered(tile: Image.Image, axis: int) -> Image.Image:
    """The tile with its orientation letters at the middle of each edge (yellow on a dark box)."""
    draw, font = ImageDraw.Draw(tile), _font(12)
    left, right, top, bottom = _VIEWS[axis][1]
    w, h = tile.size
    for letter, (x, y) in ((left, (2, h / 2 - 7)), (right, (w - 11, h / 2 - 7)), (top, (w / 2 - 4, 1)),
                           (bottom, (w / 2 - 4, h - 15))):
        draw.rectangle([x - 1, y, x + 9, y + 14], fill=(20, 20, 20))
        draw.text((x + 1, y), letter, fill=(255, 220, 0), font=font)
    return tile


def with_colourbar(img: Image.Image, vmin, vmax, cmap, unit: str) -> Image.Image:
    """``img`` with a horizontal colour bar and its end labels below."""
    bar_w, bar_h, pad = min(300, img.width), 12, 4
    bar = colourise(np.tile(np.linspace(vmin, vmax, bar_w), (bar_h, 1)), vmin, vmax, cmap)
    canvas = Image.new("RGB", (img.width, img.height + bar_h + 24), _BG)
    canvas.paste(img, (0, 0))
    canvas.paste(Image.fromarray(bar), (0, img.height + pad))
    draw, font = ImageDraw.Draw(canvas), _font()
    y = img.height + pad + bar_h + 1
    draw.text((0, y), f"{vmin:g}", fill=_INK, font=font)
    right = f"{vmax:g} {unit}".strip()
    draw.text((bar_w - draw.textlength(right, font=font), y), right, fill=_INK, font=font)
    return canvas


def histogram(values: np.ndarray, lo: float, hi: float, unit: str, bins: int = 80, label: str = "") -> Image.Image:
    """A bar histogram of ``values`` between ``lo`` and ``hi``, axes labelled (``label`` in
    ``unit`` across, voxels up); values outside the range are left out, and their count said."""
    w, h, left, bottom = 520, 250, 56, 48
    values = np.asarray(values)
    below, above = int((values < lo).sum()), int((values > hi).sum())
    counts, edges = np.histogram(values[(values >= lo) & (values <= hi)], bins=bins, range=(lo, hi))
    img = Image.new("RGB", (w, h), _BG)
    draw, font = ImageDraw.Draw(img), _font(12)
    plot_w, plot_h = w - left - 10, h - bottom - 20
    top = counts.max() if counts.size and counts.max() > 0 else 1
    for i, c in enumerate(counts):
        x0 = left + plot_w * i / bins
        x1 = left + plot_w * (i + 1) / bins - 1
        draw.rectangle([x0, 20 + plot_h * (1 - c / top), max(x0, x1), 20 + plot_h], fill=(70, 110, 170))
    draw.line([(left, 20 + plot_h), (left + plot_w, 20 + plot_h)], fill=_INK)
    draw.line([(left, 20), (left, 20 + plot_h)], fill=_INK)
    raw = (hi - lo) / 5
    step = min((m * 10 ** np.floor(np.log10(raw)) for m in (1, 2, 5, 10)), key=lambda d: abs(d - raw))
    for v in np.arange(np.ceil(lo / step) * step, hi + step / 2, step):
        x = left + plot_w * (v - lo) / (hi - lo)
        draw.line([(x, 20 + plot_h), (x, 24 + plot_h)], fill=_INK)
        tick = f"{round(v, 10):g}"
        draw.text((x - draw.textlength(tick, font=font) / 2, 26 + plot_h), tick, fill=_INK, font=font)
    axis = f"{label} ({unit})" if label else unit
    draw.text((left + (plot_w - draw.textlength(axis, font=font)) / 2, 42 + plot_h), axis, fill=_INK, font=font)
    draw.text((2, 20), f"{top}", fill=_INK, font=font)
    draw.text((2, 34), "voxels", fill=_INK, font=font)
    if below or above:
        note = f"outside the range: {below} below, {above} above"
        draw.text((w - 10 - draw.textlength(note, font=font), 0), note, fill=_INK, font=font)
    return img


def png_data_uri(img: Image.Image) -> str:
    """The image as a ``data:image/png;base64,...`` URI (the report is one file)."""
    buf = _io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
