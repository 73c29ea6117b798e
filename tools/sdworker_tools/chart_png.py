"""The cold-start timeline chart as a PNG, for the demo's closing picture.

It draws the same geometry as the SVG writer (``sdworker.status_view.chart_layout``), so both pictures
always agree; Pillow is a development dependency, which keeps it out of the operator's image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from sdworker.status_view import chart_layout


def render_png(model: dict[str, Any], path: Path) -> Path:
    chart = chart_layout(model)
    image = Image.new("RGB", (chart.width, chart.height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    bold = ImageFont.load_default(size=14)
    for ln in chart.lines:
        draw.line([(ln.x1, ln.y1), (ln.x2, ln.y2)], fill=ln.colour)
    for b in chart.boxes:
        draw.rectangle([b.x, b.y, b.x + b.w, b.y + b.h], fill=b.colour)
    for lb in chart.labels:
        face = bold if lb.bold else font
        # Labels are placed by their baseline, as in SVG.
        draw.text(
            (lb.x, lb.y), lb.text, fill="black", font=face, anchor="ms" if lb.anchor == "middle" else "ls"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path
