"""The schedule picture rendered by the core (fis_core/schedule_image.py), and the README's copy of it."""
import importlib.util

import pytest
from PIL import Image

from host_path import PACK_ROOT
from comfyui_fis.fis_core import FisSchedule
from comfyui_fis.fis_core.schedule_image import COLORS, estimate_lines, render_png, schedule_cells


def rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))


def cell_colors(path, geometry, blocks, frames):
    """The colour at the centre of every cell of a rendered picture, as kinds (None for an unknown colour)."""
    image = Image.open(path).convert("RGB")
    (x0, y0), (w, h) = geometry["grid"], geometry["cell"]
    kinds = {rgb(c): k for k, c in COLORS.items()}
    return [[kinds.get(image.getpixel((x0 + f * w + w // 2, y0 + b * h + h // 2))) for f in range(frames)]
            for b in range(blocks)]


def test_cells_follow_the_schedule():
    schedule = FisSchedule(tuple(range(1, 9)), 2, anchors=(0, -1))
    rows = schedule_cells(schedule, 10, 9)
    assert rows[0] == rows[9] == ["dense"] * 9
    assert rows[1] == ["anchor", "interpolated", "computed", "interpolated", "computed", "interpolated", "computed",
                       "interpolated", "anchor"]
    assert rows[2] == ["anchor", "computed", "interpolated", "computed", "interpolated", "computed", "interpolated",
                       "computed", "anchor"]
    # a sparse block whose subset is every frame is dense; more groups than frames fit to the frames
    assert schedule_cells(FisSchedule((1,), 2, anchors=(1,)), 3, 2)[1] == ["dense", "dense"]
    assert schedule_cells(FisSchedule((0, 1, 2), 8, "contiguous"), 3, 3) == [
        ["computed", "interpolated", "interpolated"], ["interpolated", "computed", "interpolated"],
        ["interpolated", "interpolated", "computed"]]


def test_estimate_lines_use_the_cost_model():
    off = estimate_lines(FisSchedule((), 2), 40, 21)
    assert off == ["Estimate: 0% of the block compute saved", "blocks 1.00x faster at 720p, 1.00x at 480p (H100 envelope)"]
    # 38 of 40 blocks on 11 of 21 frames (group 0) or 10 of 21: 38 * (10.5 / 21) / 40 = 47.5% skipped
    lines = estimate_lines(FisSchedule(tuple(range(1, 39)), 2), 40, 21)
    assert lines[0] == "Estimate: 48% of the block compute saved"
    assert lines[1].startswith("blocks 2.") and "at 720p" in lines[1]


@pytest.mark.parametrize("pattern, anchors", [("interleave", (0,)), ("contiguous", ()), ("interleave", (0, -1))])
def test_png_cells_show_the_schedule(tmp_path, pattern, anchors):
    schedule = FisSchedule((1, 2, 3, 5), 3, pattern, anchors)
    geometry = render_png(tmp_path / "s.png", schedule, 7, 10, title="test")
    assert cell_colors(tmp_path / "s.png", geometry, 7, 10) == schedule_cells(schedule, 7, 10)


def test_readme_picture_is_the_documented_schedule(tmp_path):
    """web/docs/schedule.png, made by scripts/render_schedule.py, shows sparse_blocks=1-8, groups=2, anchor 0 on
    10 blocks x 9 frames, as the README says (re-run the script if the picture's layout changed)."""
    spec = importlib.util.spec_from_file_location("render_schedule", PACK_ROOT / "scripts" / "render_schedule.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    geometry = script.main(["--out", str(tmp_path / "r.png")])
    schedule = FisSchedule(tuple(range(1, 9)), 2, anchors=(0,))
    committed = PACK_ROOT / "web" / "docs" / "schedule.png"
    assert Image.open(committed).size == Image.open(tmp_path / "r.png").size
    assert cell_colors(committed, geometry, 10, 9) == schedule_cells(schedule, 10, 9)
