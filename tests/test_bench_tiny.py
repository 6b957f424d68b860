"""The speed benchmark's CPU smoke mode: the script itself works (no speed claims on the CPU)."""
import json
import subprocess
import sys

import pytest

from host_path import PACK_ROOT


def test_speed_benchmark_tiny_mode_writes_its_table_and_json(host, tmp_path):
    out = tmp_path / "speed.json"
    result = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "speed.py"), "--tiny", "--settings", "default,G3",
                             "--out", str(out)], capture_output=True, text=True, timeout=600,
                            env={"COMFYUI_PATH": str(host), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["tiny"] and report["device"] == "cpu"
    rows = report["rows"]
    assert [(r["model"], r["setting"]) for r in rows] == [("wan-tiny", "default"), ("wan-tiny", "G3"),
                                                          ("hv15-tiny", "default"), ("hv15-tiny", "G3")]
    for row in rows:
        assert row["dense_ms"] > 0 and row["fis_ms"] > 0 and isinstance(row["ideal_ms"], float)   # CPU timings: no claims
        assert 0 < row["rel_err_random_weights"] < 0.5
    assert "wan-tiny | sdpa | tiny | default" in result.stdout and report["attention"] == "sdpa"
    table = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "markdown.py"), str(out)], capture_output=True, text=True)
    assert "| tiny Wan | tiny | default | auto of 6 | 2 |" in table.stdout


def test_end_to_end_benchmark_tiny_mode_times_sampling_and_decode(host, tmp_path):
    out = tmp_path / "end_to_end.json"
    result = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "end_to_end.py"), "--tiny", "--settings",
                             "balanced,fastest", "--out", str(out)], capture_output=True, text=True, timeout=600,
                            cwd=PACK_ROOT / "bench", env={"COMFYUI_PATH": str(host), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = report["rows"]
    assert report["dtype"] == "torch.float32"                       # the CPU's; on a GPU bf16 (below)
    assert [r["setting"] for r in rows] == ["dense", "balanced", "fastest"]
    assert report["frames"] == 33                                    # 9 latent frames: 33 video frames
    for row in rows:
        assert row["sample_s"] > 0 and row["decode_s"] == rows[0]["decode_s"] > 0    # the decode, timed once
        assert row["total_s"] == pytest.approx(row["sample_s"] + row["decode_s"], abs=0.011)


def test_correction_cost_benchmark_tiny_mode_times_each_form_and_writes_its_profile(tmp_path):
    out = tmp_path / "correction_cost.json"
    result = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "correction_cost.py"), "--tiny", "--profile",
                             "--fit-tokens", "4096,256", "--fit-dtypes", "float32,bfloat16", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["tiny"] and report["device"] == "cpu"
    assert [(r["fit_tokens"], r["fit_dtype"], r["path"]) for r in report["rows"]] == [   # no fused path on the CPU
        (4096, "float32", "before"), (256, "float32", "before"), (4096, "bfloat16", "before"), (256, "bfloat16", "before")]
    for row in report["rows"]:
        assert row["linear_ms"] > 0 and row["corrected_ms"] > 0 and row["fit_ms"] > 0   # CPU timings: no claims
        assert row["launches"] > 0 and row["correction_ms"] == pytest.approx(row["corrected_ms"] - row["linear_ms"], abs=2e-3)
        assert row["solve_ms"] > 0 and 0 < row["solve_rel_err"] < 1e-4      # torch's fp32 Cholesky against fp64
    assert "| tiny | before | bfloat16, 256 tokens |" in result.stdout and "'after' left out" in result.stdout
    tables = out.with_suffix(".txt").read_text()
    assert tables.count("CPU operator calls") == 4 and "aten::linalg_cholesky_ex" in tables


def test_the_benchmarks_run_bf16_on_a_gpu_and_fp32_on_the_cpu(monkeypatch):
    """Where the benchmarks run and in which dtype (end_to_end.py compared a torch.device with "cuda" and took fp32
    on the GPU)."""
    monkeypatch.syspath_prepend(str(PACK_ROOT / "bench"))
    import speed
    monkeypatch.setattr(speed.torch.cuda, "is_available", lambda: True)
    assert speed.bench_device(tiny=False) == (speed.torch.device("cuda"), speed.torch.bfloat16)
    assert speed.bench_device(tiny=True) == (speed.torch.device("cpu"), speed.torch.float32)
    monkeypatch.setattr(speed.torch.cuda, "is_available", lambda: False)
    assert speed.bench_device(tiny=False) == (speed.torch.device("cpu"), speed.torch.float32)


def test_correction_cost_refuses_full_size_shapes_without_a_gpu(tmp_path):
    result = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "correction_cost.py"), "--out",
                             str(tmp_path / "c.json")], capture_output=True, text=True, timeout=300,
                            env={"PATH": "/usr/bin:/bin", "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 1 and "need a CUDA GPU; --tiny checks the script" in result.stderr
    assert not (tmp_path / "c.json").exists()


def test_run_memory_benchmark_tiny_mode_runs_a_run_and_releases_it(tmp_path):
    """The script behind the GPU figure of what a run holds and gives back (no figures on the CPU)."""
    out = tmp_path / "run_memory.json"
    result = subprocess.run([sys.executable, str(PACK_ROOT / "bench" / "run_memory.py"), "--tiny", "--blocks", "3",
                             "--out", str(out)], capture_output=True, text=True, timeout=600, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads(out.read_text())["rows"][0]
    assert (row["blocks"], row["steps"], row["held_mb"], row["released_mb"]) == (3, 4, 0.0, 0.0)
    assert row["fit_sums_mb_computed"] == 2 * 3 * 2 * 128 * 128 * 4 / 2**20     # 2 maps of 128 channels, fp32
