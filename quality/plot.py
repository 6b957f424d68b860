"""Small charts and frame grids drawn with Pillow (matplotlib is not among ComfyUI's requirements)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


@dataclass
class Series:
    """One set of points; ``line`` joins them in order, ``labels`` writes a text beside each point."""

    name: str
    xs: list[float]
    ys: list[float]
    colour: str | None = None
    line: bool = True
    marker: str = "o"            # "o" circle, "s" square, "^" triangle, "" none
    labels: list[str] | None = None


@dataclass
class Panel:
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    log_y: bool = False


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def _draw_panel(draw: ImageDraw.ImageDraw, panel: Panel, box: tuple[int, int, int, int], font, small):
    left, top, right, bottom = box
    plot = (left + 64, top + 34, right - 16, bottom - 92)
    points = [(x, y) for s in panel.series for x, y in zip(s.xs, s.ys) if not (panel.log_y and y <= 0)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    fy = (lambda v: math.log10(v)) if panel.log_y else (lambda v: v)
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(map(fy, ys)), max(map(fy, ys))
    pad_x, pad_y = (x1 - x0) * 0.06 or 1.0, (y1 - y0) * 0.08 or 1.0
    x0, x1, y0, y1 = x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y

    def to_px(x, y):
        return (plot[0] + (x - x0) / (x1 - x0) * (plot[2] - plot[0]),
                plot[3] - (fy(y) - y0) / (y1 - y0) * (plot[3] - plot[1]))

    draw.text(((left + right) / 2, top + 8), panel.title, fill="black", font=font, anchor="mt")
    draw.rectangle(plot, outline="black")
    for tx in _ticks(x0, x1):
        px = to_px(tx, 10 ** y0 if panel.log_y else y0)[0]
        draw.line([(px, plot[3]), (px, plot[1])], fill="#e6e6e6")
        draw.text((px, plot[3] + 4), _fmt(tx), fill="black", font=small, anchor="mt")
    for ty in _ticks(y0, y1):
        value = 10 ** ty if panel.log_y else ty
        py = to_px(x0, value)[1]
        draw.line([(plot[0], py), (plot[2], py)], fill="#e6e6e6")
        draw.text((plot[0] - 4, py), _fmt(value), fill="black", font=small, anchor="rm")
    draw.text(((plot[0] + plot[2]) / 2, plot[3] + 22), panel.x_label, fill="black", font=font, anchor="mt")
    draw.text((left + 4, plot[1] - 6), panel.y_label, fill="black", font=small, anchor="ls")
    legend_y = bottom - 48
    legend_x = left + 16
    placed: list[tuple[float, float, float, float]] = []
    for i, s in enumerate(panel.series):
        colour = s.colour or PALETTE[i % len(PALETTE)]
        pts = [to_px(x, y) for x, y in zip(s.xs, s.ys) if not (panel.log_y and y <= 0)]
        if s.line and len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for px, py in pts:
            _marker(draw, s.marker, px, py, colour)
        if s.labels:
            for (px, py), label in _merged_labels(pts, s.labels):
                _place_label(draw, label, px, py, plot, placed, colour, small)
        width = draw.textlength(s.name, font=small) + 36
        if legend_x + width > right:
            legend_x, legend_y = left + 16, legend_y + 18
        draw.line([(legend_x, legend_y + 7), (legend_x + 20, legend_y + 7)], fill=colour, width=2 if s.line else 0)
        _marker(draw, s.marker, legend_x + 10, legend_y + 7, colour)
        draw.text((legend_x + 26, legend_y), s.name, fill="black", font=small)
        legend_x += width


def _merged_labels(points, labels):
    """One label per distinct point position: labels of points drawn on the same spot are joined."""
    merged: dict[tuple[int, int], list[str]] = {}
    for (px, py), label in zip(points, labels):
        merged.setdefault((round(px), round(py)), []).append(label)
    return [((px, py), names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}") for (px, py), names in merged.items()]


def _place_label(draw, text, px, py, plot, placed, colour, font):
    """Write ``text`` beside the point (px, py): to its right, or its left near the plot's right edge,
    moved down past labels already placed."""
    width = draw.textlength(text, font=font)
    x = px + 6 if px + 6 + width <= plot[2] else px - 6 - width
    y = py - 14
    while any(x < b[2] and b[0] < x + width and y < b[3] and b[1] < y + 12 for b in placed):
        y += 12
    placed.append((x, y, x + width, y + 12))
    draw.text((x, y), text, fill=colour, font=font)


def _marker(draw, marker, x, y, colour, r=4):
    if marker == "o":
        draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif marker == "s":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
    elif marker == "^":
        draw.polygon([(x, y - r - 1), (x - r - 1, y + r), (x + r + 1, y + r)], fill=colour)


def save_panels(panels: list[Panel], path: Path, panel_size: tuple[int, int] = (620, 460)):
    """Draw ``panels`` side by side into one PNG at ``path``."""
    width, height = panel_size
    image = Image.new("RGB", (width * len(panels), height), "white")
    draw = ImageDraw.Draw(image)
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    for i, panel in enumerate(panels):
        _draw_panel(draw, panel, (i * width, 0, (i + 1) * width, height), font, small)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def save_frame_grid(rows: list[tuple[str, torch.Tensor]], path: Path, frames: int = 5, zoom: int = 3):
    """One labelled row per clip [3, F, H, W] in [0, 1]: ``frames`` evenly spaced frames, enlarged
    ``zoom`` times with sharp pixels."""
    font = ImageFont.load_default(size=12)
    _, count, h, w = rows[0][1].shape
    picks = [round(i * (count - 1) / (frames - 1)) for i in range(frames)]
    label_width, gap = 130, 2
    image = Image.new("RGB", (label_width + frames * (w * zoom + gap), len(rows) * (h * zoom + gap)), "white")
    draw = ImageDraw.Draw(image)
    for r, (label, clip) in enumerate(rows):
        top = r * (h * zoom + gap)
        draw.text((4, top + h * zoom / 2), label, fill="black", font=font, anchor="lm")
        for c, f in enumerate(picks):
            array = (clip[:, f].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
            image.paste(Image.fromarray(array).resize((w * zoom, h * zoom), Image.NEAREST),
                        (label_width + c * (w * zoom + gap), top))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
