"""The schedule view's JavaScript (web/fis_schedule.js, run with node) against the Python core it mirrors:
FisSchedule and the widget parsers, the cost model, and the picture's cells, colours and text."""
import itertools
import json
import math
import os
import shutil
import subprocess

import pytest

from host_path import PACK_ROOT
from comfyui_fis.fis_core import BLOCK_MS, FisSchedule, estimated_speedup, parse_block_list, parse_frame_list
from comfyui_fis.fis_core import schedule_image

NODE = shutil.which("node")
RUNNER = """
import * as fis from "./fis_schedule.mjs";
const cases = JSON.parse(await new Promise((done) => {
  let text = ""; process.stdin.on("data", (d) => (text += d)); process.stdin.on("end", () => done(text));
}));
const results = cases.map(({ widgets, blocks, frames, autoAnchors, profile }) => {
  const view = fis.describeSchedule(widgets, blocks, frames, autoAnchors, profile ?? null);
  if (view.error) return { error: view.error };
  return { cells: view.cells, lines: view.lines,
           fraction: fis.computedFraction(view.schedule, blocks, frames),
           speedup: ["720p", "480p"].map((r) => fis.estimatedSpeedup(view.schedule, blocks, frames, r)) };
});
const constants = { COLORS: fis.COLORS, LEGEND: fis.LEGEND, CELL_KINDS: fis.CELL_KINDS, BLOCK_MS: fis.BLOCK_MS };
process.stdout.write(JSON.stringify({ results, constants }));
"""


@pytest.fixture(scope="module")
def run_js(tmp_path_factory):
    """Run the view's schedule code on a list of cases; returns (results, constants)."""
    if NODE is None:
        reason = "node is not installed: the JavaScript schedule was not checked (scripts/dev_setup.py installs nodejs)"
        if os.environ.get("FIS_REQUIRE_WEB_TOOLS"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("js")
    shutil.copy(PACK_ROOT / "web" / "fis_schedule.js", folder / "fis_schedule.mjs")
    (folder / "run.mjs").write_text(RUNNER)

    def run(cases):
        done = subprocess.run([NODE, "run.mjs"], cwd=folder, input=json.dumps(cases), capture_output=True,
                              text=True, timeout=120, check=True)
        output = json.loads(done.stdout)
        return output["results"], output["constants"]
    return run


def python_view(widgets, blocks, frames, auto_anchors):
    """What the view must show, from the core: the node's reading of the widgets, then the picture module."""
    try:
        spec = widgets["sparse_blocks"].strip().lower()
        sparse = tuple(range(1, blocks - 1)) if spec == "auto" and blocks > 2 else () if spec == "auto" \
            else parse_block_list(spec, blocks)
        anchor_spec = widgets["anchor_frames"].strip().lower()
        anchors = tuple(auto_anchors) if anchor_spec == "auto" else parse_frame_list(anchor_spec)
        schedule = FisSchedule(sparse, widgets["groups"], widgets["pattern"], anchors).fit_to(frames)
    except ValueError as error:
        return {"error": str(error)}
    return {"cells": schedule_image.schedule_cells(schedule, blocks, frames),
            "lines": schedule_image.estimate_lines(schedule, blocks, frames),
            "fraction": schedule.computed_fraction(blocks, frames),
            "speedup": [estimated_speedup(schedule, blocks, frames, r) for r in ("720p", "480p")]}


SPECS = ["auto", "1-8", "0,2,5-9", "", " 3 , 1-2 ,3", "4-35", "3-12", "a-b", "1-", "-3", "40-10", "5-1",
         "0-99999999999", "1-" + "x" * 100]
ANCHORS = ["auto", "", "0", "0,-1", "-30", "5,x", "99999999999,0"]


def test_js_schedule_matches_python_on_a_grid_of_settings(run_js):
    cases = [{"widgets": {"sparse_blocks": spec, "groups": groups, "pattern": pattern, "anchor_frames": anchors},
              "blocks": blocks, "frames": frames, "autoAnchors": auto}
             for spec, groups, pattern, anchors, (blocks, frames), auto in itertools.product(
                 SPECS, range(1, 9), ("interleave", "contiguous"), ANCHORS,
                 [(10, 9), (40, 21), (30, 31), (60, 3), (12, 1)], ([], [0]))]
    results, _ = run_js(cases)
    assert len(results) == len(cases)
    kinds = set()
    for case, got in zip(cases, results):
        expected = python_view(case["widgets"], case["blocks"], case["frames"], case["autoAnchors"])
        assert got == expected, case
        kinds.update(k for row in got.get("cells", []) for k in row)
    assert kinds == set(schedule_image.CELL_KINDS)
    assert sum("error" in r for r in results) > 1000 and sum("cells" in r for r in results) > 1000


def test_js_constants_match_the_core(run_js):
    _, constants = run_js([])
    assert constants["COLORS"] == schedule_image.COLORS
    assert constants["LEGEND"] == schedule_image.LEGEND
    assert constants["CELL_KINDS"] == list(schedule_image.CELL_KINDS)
    assert constants["BLOCK_MS"] == {res: {str(f): ms for f, ms in table.items()} for res, table in BLOCK_MS.items()}


def test_a_changed_widget_changes_the_view(run_js):
    base = {"sparse_blocks": "auto", "groups": 2, "pattern": "interleave", "anchor_frames": ""}
    variants = [base, {**base, "groups": 3}, {**base, "pattern": "contiguous"}, {**base, "anchor_frames": "0"},
                {**base, "sparse_blocks": "4-35"}, {**base, "groups": 1}]
    results, _ = run_js([{"widgets": w, "blocks": 40, "frames": 21, "autoAnchors": []} for w in variants])
    pictures = [json.dumps(r["cells"]) for r in results]
    assert len(set(pictures)) == len(pictures)
    off = results[-1]
    assert off["lines"] == ["Estimate: 0% of the block compute saved",
                            "blocks 1.00x faster at 720p, 1.00x at 480p (H100 envelope)"]
    assert off["speedup"] == pytest.approx([1.0, 1.0])


def test_a_profile_draws_the_blocks_the_server_chose(run_js):
    """For ``profile:NAME[:K]`` the view draws the blocks of the server's answer (the node's own choice, see
    tests/test_web_profile.py), says the server's error as it is, and says so while it asks."""
    widgets = {"sparse_blocks": " profile:wan6:4 ", "groups": 2, "pattern": "interleave", "anchor_frames": ""}
    answer = {"chosen": [0, 1, 3, 5], "defect": [0.05, 0.02, 0.09, 0.01, 0.07, 0.03]}
    error = "sparse_blocks: there is no profile 'wan6'; run a FIS Calibrate node"
    profiles = [answer, {"error": error}, None]
    results, _ = run_js([{"widgets": widgets, "blocks": 6, "frames": 9, "autoAnchors": [], "profile": profile}
                         for profile in profiles])
    assert results[0] == python_view({**widgets, "sparse_blocks": "0,1,3,5"}, 6, 9, [])
    assert results[1] == {"error": error}
    assert results[2] == {"error": "sparse_blocks: asking the server for the profile..."}


def test_a_preset_with_dense_steps_says_so_under_the_estimate(run_js, host):
    """faithful runs its first and final steps dense: the view's estimate is for the steps between, and says so."""
    from comfyui_fis.nodes.ui.fis_node import PRESETS
    widgets = {"sparse_blocks": "auto", "groups": 2, "pattern": "interleave", "anchor_frames": "auto"}
    cases = [{"widgets": {**widgets, **preset}, "blocks": 40, "frames": 21, "autoAnchors": []}
             for preset in (PRESETS["faithful"], PRESETS["balanced"])]
    (faithful, balanced), _ = run_js(cases)
    assert faithful["lines"][-2] == "the first and final sampling steps run dense; the estimate is for the others"
    per_step = estimated_speedup(FisSchedule(tuple(range(40)), 2), 40, 21, "720p")     # every block sparse
    runs = {n: math.floor(100 * n / (2 + (n - 2) / per_step) + 0.5) / 100 for n in (4, 8, 20)}
    assert faithful["lines"][-1] == (f"a whole run at 720p: about {runs[4]:.2f}x in 4 steps, {runs[8]:.2f}x in 8, "
                                     f"{runs[20]:.2f}x in 20")
    assert 1.0 < runs[4] < runs[8] < runs[20] < per_step
    assert balanced["lines"] == python_view({**widgets, **PRESETS["balanced"]}, 40, 21, [])["lines"]
