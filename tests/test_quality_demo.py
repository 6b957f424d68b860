"""The demo end to end: the shipped checkpoint through ComfyUI, dense and FIS, an animated side-by-side, and the
FIS Compare node's report and picture of the two.

The demo's default prompt and seed measured 27.6 dB pooled (FIS defaults, balanced, against dense, 4 steps, CPU);
the bound leaves 1.1 dB for other CPUs and torch versions. A broken restore, correction or schedule lands far
lower (the linear restore with fixed groups 19.1 dB; a different seed of the same prompt is about 17 dB away)."""
import re

from PIL import Image


def test_the_demo_writes_the_side_by_side_and_prints_the_figures(host, tmp_path, capsys):
    from comfyui_fis.quality import demo, scenes
    from comfyui_fis.nodes.compare.side_by_side import GAP
    out, picture = tmp_path / "demo.webp", tmp_path / "compare.png"
    demo.main(["--out", str(out), "--compare", str(picture)])
    printed = capsys.readouterr().out
    with Image.open(out) as image:
        assert image.n_frames == scenes.FRAMES
        assert image.size[0] > 3 * scenes.SIZE * demo.ZOOM
    with Image.open(picture) as image:
        assert image.size == (3 * scenes.SIZE * demo.PICTURE_ZOOM + 2 * GAP, scenes.SIZE * demo.PICTURE_ZOOM)
    assert float(re.search(r"PSNR ([\d.]+) dB \(all frames pooled\), worst frame \d+", printed).group(1)) >= 26.5
    assert re.search(r"sampling time: reference [\d.]+ s, accelerated [\d.]+ s, speed-up [\d.]+x", printed)
    assert re.search(r"compute saved: \d+% of the transformer blocks' FLOPs", printed)
