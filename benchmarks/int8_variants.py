"""Which part of SepHSR's int8 graph is slow? Batch-256 faces/s (2 threads) of int8 variants against fp32.

Exports the model as ``agekit bench`` does (seeded random weights, padded fp32 graph), then quantises it
statically (per-channel int8 weights, calibrated on 64 sample crops) five ways: all of it; all but the
depthwise convolutions; all but the depthwise convolutions and the pools; QOperator format; int8
activations instead of uint8. Result: docs/results/speed.md.

    python benchmarks/int8_variants.py [sephsr_30_10]
"""
import sys
import tempfile
from pathlib import Path

import onnx
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from agekit.export.onnx import _Calibration, export_onnx
from agekit.inference.backends import OnnxRunner
from agekit.inference.bench import bench_inputs, time_call
from agekit.models.checkpoint import LoadedModel

name = sys.argv[1] if len(sys.argv) > 1 else "sephsr_30_10"
model, spec, xb = bench_inputs(name, 256)  # the same random weights and faces as agekit bench
d = Path(tempfile.mkdtemp())
rep = export_onnx(LoadedModel(model, name, {}, spec, None, {}), d / f"{name}.onnx", int8=False, atol=1e-3)
quant_pre_process(str(rep.path), str(d / "pre.onnx"), skip_symbolic_shape=False)
g = onnx.load(str(d / "pre.onnx"))
dw = [n.name for n in g.graph.node if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)]
pools = [n.name for n in g.graph.node if "Pool" in n.op_type]
print("nodes", len(g.graph.node), "depthwise", len(dw), "pools", len(pools), {n.op_type for n in g.graph.node})
def run(path, label):
    r = OnnxRunner(path, threads=2)
    t = time_call(lambda: r(xb), 10, warmup=2)
    print(label, round(256 / t), "faces/s", flush=True)
run(rep.path, "fp32")
CalibrationDataReader.register(_Calibration)
for label, fmt, excl, act in [("qdq all", QuantFormat.QDQ, [], QuantType.QUInt8),
                              ("qdq no-dw", QuantFormat.QDQ, dw, QuantType.QUInt8),
                              ("qdq no-dw-no-pool", QuantFormat.QDQ, dw + pools, QuantType.QUInt8),
                              ("qop all", QuantFormat.QOperator, [], QuantType.QUInt8),
                              ("qop no-dw", QuantFormat.QOperator, dw, QuantType.QUInt8),
                              ("qdq s8 all", QuantFormat.QDQ, [], QuantType.QInt8)]:
    out = d / f"{label.replace(' ', '_')}.onnx"
    try:
        quantize_static(str(d / "pre.onnx"), str(out), _Calibration("input", xb[:64]), quant_format=fmt, per_channel=True,
                        activation_type=act, weight_type=QuantType.QInt8, nodes_to_exclude=excl)
        run(out, label)
    except Exception as e:
        print(label, "failed", type(e).__name__, str(e)[:200])
