"""agekit.evaluation.papers_table: the papers table assembled from train_zoo.py and compact_table.py result files."""
from __future__ import annotations

import json

from agekit.evaluation import papers_table as pt


def _zoo_row(recipe, model, mae, epochs, **kw):
    return {"recipe": recipe, "model": model, "mae": mae, "ca3": 0.25, "ca5": 0.5, "epochs": epochs,
            "images_seen": 1000 * epochs, "train_s": 600.0, "params": 40531, "macs": 17_078_926,
            "settings": "batch 50; test: flip averaging", **kw}


def test_papers_table_rows_order_rerun_and_generations(tmp_path):
    zoo = tmp_path / "zoo.json"
    zoo.write_text(json.dumps({"rows": [
        _zoo_row("mobilenetv1_025_utkface", "mobilenetv1_025", 7.96, 20),
        _zoo_row("ssrnet_utkface", "ssrnet", 6.674, 20),
        _zoo_row("lrn_resnet18_64_g4_utkface", "lrn_resnet18", 7.4167, 5,
                 generations=[{"generation": g, "mae": m} for g, m in enumerate([7.11, 6.99, 6.94, 7.4167], 1)]),
        {"recipe": "c3ae_full_utkface", "model": "?", "skipped": "ValueError: no view"},
    ]}))
    rerun = tmp_path / "rerun.json"  # the same SSR-Net length again: replaces the first row
    rerun.write_text(json.dumps({"rows": [_zoo_row("ssrnet_utkface", "ssrnet", 6.5, 20, settings="batch 50")]}))
    kd = tmp_path / "kd.json"  # compact_table.py's list: the flip block counts, the run name picks the label
    kd.write_text(json.dumps([{"run": "sephsr_30_10_cosine_kd", "model": "sephsr_30_10", "recipe": "x", "epochs": 20,
                               "train_s": 120.0, "params": 11990, "macs": 11_147_680,
                               "test": {"mae": 9.0, "ca3": 0.1, "ca5": 0.2},
                               "flip": {"mae": 6.04, "ca3": 0.405, "ca5": 0.561}}]))
    lat = tmp_path / "lat.json"
    lat.write_text(json.dumps({"rows": [{"model": "ssrnet", "params": 1, "macs": 2, "onnx_fp32_b1_ms": 0.42}]}))
    rows = pt.merge_rows([zoo, kd, rerun])
    assert [k for k, _ in rows] == ["mobilenetv1_025", "lrn_resnet18", "sephsr_30_10_cosine_kd", "ssrnet"]
    assert rows[("ssrnet", 20)]["mae"] == 6.5 and not rows[("ssrnet", 20)]["flip"]
    assert rows[("sephsr_30_10_cosine_kd", 20)]["mae"] == 6.04 and rows[("sephsr_30_10_cosine_kd", 20)]["flip"]

    ranked = pt.assemble([zoo, kd, rerun])
    lines = [ln for ln in pt.markdown(ranked, pt.latency(lat)).splitlines() if ln.startswith("| ")][1:]
    # grouped in the papers' order: SSR-Net, SepHSR, LRN ResNet-18, MobileNet; the skipped row is left out
    assert [ln.split(" | ")[0] for ln in lines] == ["| SSR-Net(3,3,3)", "| SepHSR(30,10) distilled (ensemble teacher)",
                                                   "| LRN ResNet-18 (64 px, small stem)", "| MobileNetV1(0.25)"]
    ssr = lines[0].split(" | ")
    # params and MACs from the run's row, latency from the latency file; the rerun's figures, not flip-averaged
    assert ssr[2:7] == ["40,531", "17.1M", "0.42 ms", "3.16 (SSR Table 1)", "6.50 (0.250 / 0.500)"]
    assert ssr[7:10] == ["20", "20,000", "10"]
    kd_cells = lines[1].split(" | ")
    assert kd_cells[4] == "- ms" and kd_cells[6] == "6.04 (0.405 / 0.561), flip" and kd_cells[8] == "-"
    lrn = lines[2].split(" | ")
    assert lrn[6] == "7.42 (0.250 / 0.500), flip; t = 1..4: 7.11 / 6.99 / 6.94 / 7.42" and lrn[7] == "5 x 4 gen."
    assert [r["key"] for r in ranked] == ["ssrnet", "sephsr_30_10_cosine_kd", "lrn_resnet18", "mobilenetv1_025"]
