"""The demo's PNG chart draws the same geometry as the SVG: checked pixel by pixel at the bars."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from sdworker.status_view import chart_layout, render_svg
from sdworker_tools.chart_png import render_png

MODEL = {
    "runtimeDisks": [
        {
            "node": "gpu-node-0",
            "phase": "Ready",
            "offsetsSeconds": {"nodeCreated": 0, "diskCreated": 20, "attached": 24, "mounted": 25},
            "readySeconds": 25,
        },
        {
            "node": "gpu-node-1",
            "phase": "Attaching",
            "offsetsSeconds": {"nodeCreated": 0, "diskCreated": 2},
            "readySeconds": None,
        },
    ]
}


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_png_has_the_layouts_bars(tmp_path: Path) -> None:
    chart = chart_layout(MODEL)
    path = render_png(MODEL, tmp_path / "sub" / "timeline.png")
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (chart.width, chart.height)
        for box in chart.boxes:
            centre = (int(box.x + box.w / 2), int(box.y + box.h / 2))
            assert image.getpixel(centre) == _rgb(box.colour), box


def test_svg_and_png_come_from_one_layout() -> None:
    chart = chart_layout(MODEL)
    svg = render_svg(MODEL)
    # 3 steps for the first node, 1 for the second, 5 legend swatches.
    assert len(chart.boxes) == 3 + 1 + 5
    assert svg.count("<rect ") == len(chart.boxes) + 1  # plus the white background
    assert "gpu-node-1 (Attaching)" in svg
