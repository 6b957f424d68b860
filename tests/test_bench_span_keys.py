"""bench/span_keys.py on the CPU: its span-keys attention (flex_attention, and in parts merged by log-sum-exp) is the
lab's PooledKeys attention, and its tiny run writes its tables with the errors against the float32 reference."""
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from host_path import PACK_ROOT

GRID, HEADS, HEAD_DIM = (9, 8, 8), 2, 16


@pytest.fixture
def span_keys(monkeypatch):
    monkeypatch.syspath_prepend(str(PACK_ROOT / "bench"))
    import span_keys
    return span_keys


def lab_attention(q, k, v, layout):
    """quality/fit_study.py's PooledKeys (weighted, the span's whole keys, no RoPE re-centring) on the host's own
    attention: the computed frames' outputs [B, Q, H, D]."""
    import comfy.ldm.modules.attention as host_attention

    from comfyui_fis.quality.fit_study import PooledKeys
    mechanism = PooledKeys(layout.pool, True, layout.near, SimpleNamespace(dim=HEADS * HEAD_DIM, ffn_dim=0), None)
    attend = mechanism.attention(layout.computed, list(layout.skipped), layout.tokens, None)
    order = torch.cat([torch.arange(f * layout.tokens, (f + 1) * layout.tokens) for f in layout.computed + layout.skipped])
    q, k, v = (x[:, order].flatten(2) for x in (q, k, v))
    out = attend(host_attention.attention_pytorch, q, k, v, heads=HEADS)
    return out[:, :layout.queries].unflatten(-1, (HEADS, HEAD_DIM))


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_span_keys_attention_is_the_labs_pooled_keys(span_keys, host):
    layout = span_keys.SpanLayout(GRID, groups=3)
    assert (layout.computed, layout.skipped, layout.averaged) == ((0, 3, 6), (1, 2, 4, 5, 7, 8), 4)
    assert [layout.span(f) for f in layout.computed] == [(0, 2), (0, 4), (2, 6)]   # frames 1,2 | 1,2,4,5 | 4,5,7,8
    q, k, v = span_keys.video_qkv(GRID, heads=HEADS, dim=HEAD_DIM, device="cpu", dtype=torch.float32)
    lab = lab_attention(q, k, v, layout)
    q_c, keys, values = span_keys.span_inputs(q, k, v, layout)
    assert keys.shape[1] == layout.keys == 3 * 64 + 6 * 64 + 6 * 4
    attend_lse = span_keys.attn.sdpa_flash_lse()[0]
    for out in (span_keys.flex_span(layout, "cpu")(q_c, keys, values),
                span_keys.parts_span(layout, attend_lse, "cpu")(q_c, keys, values),
                span_keys.reference(q_c, keys, values, layout, [0, 1])):
        assert relative(out, lab) < 1e-5
    # the check can tell: without the averaged keys' weight, or with every skipped frame averaged, it is another output
    unweighted = span_keys.flex_span(layout, "cpu", weight=0.0)(q_c, keys, values)
    assert relative(unweighted, lab) > 1e-2
    assert relative(span_keys.parts_span(layout, attend_lse, "cpu", weight=0.0)(q_c, keys, values), unweighted) < 1e-5

    class EveryFrameAveraged(span_keys.SpanLayout):
        def span(self, frame):
            return 0, 0
    every_averaged = span_keys.parts_span(EveryFrameAveraged(GRID, groups=3), attend_lse, "cpu")(q_c, keys, values)
    assert relative(every_averaged, lab) > 1e-2


def test_tiny_run_writes_its_tables_and_its_span_rows_match_the_reference(tmp_path):
    out = tmp_path / "span_keys.json"
    result = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "span_keys.py"), "--tiny", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["tiny"] and report["device"] == "cpu"
    (shape,) = report["shapes"]
    assert (shape["computed"], shape["queries"], shape["keys"]) == ([0, 3, 6], 192, 600)
    # frame 0: 192 computed + 2 whole frames + 4 averaged ones of 4; frames 3 and 6: 192 + 4 x 64 + 2 x 4
    assert shape["span_keys_per_query"] == pytest.approx((192 + 128 + 16 + 2 * (192 + 256 + 8)) / 3, abs=0.05)
    rows = {row["attention"]: row for row in shape["attention"]}
    assert list(rows) == ["dense, SDPA flash", "plain G=3, SDPA flash", "span keys, flex_attention",
                          "span keys in parts + LSE merge, SDPA flash"]
    assert all(row["ms"] > 0 for row in rows.values())                          # CPU timings: no claims
    for name in ("span keys, flex_attention", "span keys in parts + LSE merge, SDPA flash"):
        assert rows[name]["rel_error"] < 1e-5
    assert [b["block"] for b in shape["composed_blocks"]] == ["dense", "plain G=3", "span keys, flex_attention",
                                                              "span keys in parts + LSE merge"]
    for block in shape["composed_blocks"]:
        assert block["block_ms"] == pytest.approx(block["attention_ms"] + block["rest_ms"] + block["extra_ms"], abs=2e-3)
    assert shape["extra"]["ms"] > 0 and "| tiny | span keys, flex_attention |" in result.stdout


def test_full_size_shapes_need_a_gpu(tmp_path):
    result = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "span_keys.py"), "--out", str(tmp_path / "s.json")],
                            capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode != 0 and "--tiny" in result.stderr
