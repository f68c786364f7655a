"""agekit bench: target checks, the Markdown report, one model's row, and the photo breakdown."""
from __future__ import annotations

import pytest

from agekit.inference import bench


def _result(models, photo=None):
    return {"machine": bench.machine_info(1), "command": "agekit bench", "batch": 256, "models": models,
            **({"photo": photo} if photo else {})}


def test_check_targets_golden():
    rows = [
        {"model": "ssrnet", "onnx_fp32_b1_ms": 0.2, "onnx_vs_torch_b1": 6.0, "batch": 256},
        {"model": "sephsr_30_10", "onnx_fp32_fps": 6000.0, "onnx_int8_fps": 9000.0, "onnx_vs_torch_b1": 2.8, "batch": 256},
    ]
    t = {x["what"]: x["met"] for x in bench.check_targets(_result(rows, {"total_ms": 16.0, "total_cpu_ms": 14.0}))}
    assert t["SSR-Net ONNX fp32 batch-1 latency (ms)"] is True
    assert t["SepHSR(30,10) fp32 faces/s at batch 256"] is True
    assert t["SepHSR(30,10) int8 faces/s at batch 256"] is False  # 9,000 < 10,000
    assert t["ssrnet ONNX vs torch eager speed-up at batch 1"] is True
    assert t["sephsr_30_10 ONNX vs torch eager speed-up at batch 1"] is False
    assert t["640x480 photo, one face, end to end (ms)"] is False  # 16 > 15
    assert t["640x480 photo, one face, end to end (CPU ms)"] is True


def test_bench_model_row_and_markdown(tmp_path):
    row = bench.bench_model("c3ae_plain", repeats=3, batch=8, int8=False, workdir=tmp_path)
    assert row["params"] == 36_089 and row["batch"] == 8
    assert row["parity_fp32"] < 1e-4  # ONNX fp32 agrees with torch on the sample crops
    for k in ("torch_b1_ms", "onnx_fp32_b1_ms", "torch_fps", "onnx_fp32_fps"):
        assert row[k] > 0
    assert row["onnx_vs_torch_b1"] == pytest.approx(row["torch_b1_ms"] / row["onnx_fp32_b1_ms"])
    md = bench.render_markdown({**_result([row, {"model": "nope", "error": "KeyError: 'nope'"}]),
                                "targets": bench.check_targets(_result([row]))})
    assert "| c3ae_plain | 36,089 |" in md and "| nope | error: KeyError: 'nope' |" in md


def test_bench_hsr_runs_padded_onnx_with_batch_threads(tmp_path):
    row = bench.bench_model("sephsr_30_10", repeats=3, batch=8, int8=False, workdir=tmp_path, batch_threads=2)
    assert row["params"] == 11_990 and row["threads"] == 1 and row["batch_threads"] == 2  # the paper's count, not the padded one
    assert row["onnx_padded_channels"] == {"multiple": 16, "from": 30, "to": 32}
    assert row["parity_fp32"] < 1e-4  # the padded graph against the 30-channel network
    md = bench.render_markdown({**_result([row]), "targets": bench.check_targets(_result([row]))})
    assert "sephsr_30_10: the ONNX graphs are its equal network with 30 channels zero-padded to 32" in md


def test_bench_photo_stages(utkface_dir):
    p = bench.bench_photo(repeats=3)
    assert p["faces_found"] == 1
    assert "agenet_mt" in p["model"]  # the shipped default, not random weights
    stages = [p[k] for k in ("decode_ms", "detect_ms", "align_crop_ms", "estimate_ms")]
    assert all(v > 0 for v in stages)  # each stage timed on its own: never a negative difference
    assert p["total_ms"] > 0 and p["total_cpu_ms"] > 0
