"""The demo end to end: the shipped checkpoint through ComfyUI, dense and FIS, an animated side-by-side.

The demo's default prompt and seed measured 19.2 dB (FIS defaults against dense, 4 steps, CPU); the
bound leaves 1.2 dB for other CPUs and torch versions. A broken restore or schedule lands far lower
(a different seed of the same prompt is about 17 dB away)."""
import re

from PIL import Image


def test_the_demo_writes_the_side_by_side_and_prints_the_figures(host, tmp_path, capsys):
    from comfyui_fis.quality import demo, scenes
    out = tmp_path / "demo.webp"
    demo.main(["--out", str(out)])
    printed = capsys.readouterr().out
    with Image.open(out) as image:
        assert image.n_frames == scenes.FRAMES
        assert image.size[0] > 3 * scenes.SIZE * demo.ZOOM
    assert float(re.search(r"PSNR ([\d.]+) dB", printed).group(1)) >= 18.0
    assert re.search(r"compute saved: \d+% of the transformer blocks' FLOPs", printed)
