"""Export: a trained checkpoint to an ONNX graph with its JSON sidecar (:func:`agekit.export.onnx.export_onnx`),
optional int8 quantisation with a calibration set of face crops, and the parity check against PyTorch."""
