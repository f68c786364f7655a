"""Where MTCNN's 5 points sit in dlib's face-box frame, and how closely alignment on them matches alignment on dlib's.

    python experiments/mtcnn_landmarks.py [--data ../shared/data/utkface/UTKFace] [--n 2000]

On a fixed sample of UTKFace photos where both dlib (HOG, upsample 1, 5-point model) and MTCNN find a face, each
face's MTCNN points are mapped into the unit frame of ``FACE5_TEMPLATE`` by the similarity that aligns its dlib
landmarks; the mean over the first half gives ``agekit.face.mtcnn.MTCNN_IN_BOX``. On the second half, the aligned
frame from MTCNN's points (``mtcnn_to_dlib5``) is compared with the frame from dlib's landmarks: the corners of the
aligned face box move by the reported fraction of the face's size, and the converted points lie the reported
distance from dlib's, in inter-ocular distances. The simpler conversion from the eye centres and nose tip alone
(``_five_from_eyes_nose``, as for YuNet and MediaPipe) is measured the same way, and so are the landmarks the
``mtcnn`` detectors give by default: dlib's 5-point model run in the face box the converted points imply
(``agekit.face.detect.refine_landmarks``). (Fitting all five MTCNN points,
the mouth corners included, gave a larger shift: 0.053 mean, 0.111 at the 95th percentile, on 766 faces.) Writes
``experiments/results/mtcnn_landmarks.json``.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2
import numpy as np

from agekit.face.align import FACE5_TEMPLATE, apply_affine, face_frame, template_matrix
from agekit.face.detect import _five_from_eyes_nose, get_detector, refine_landmarks
from agekit.face.mtcnn import MTCNN, mtcnn_to_dlib5

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "utkface" / "UTKFace"
OUT = ROOT / "experiments" / "results" / "mtcnn_landmarks.json"


def frame_corners(landmarks: np.ndarray) -> np.ndarray:
    """The image positions of the aligned face box's corners (similarity alignment)."""
    fr = face_frame(np.zeros(4), landmarks, "similarity")
    side = fr.box[2]
    inv = np.linalg.inv(np.vstack([fr.matrix, [0, 0, 1]]))[:2]
    return apply_affine(inv, [[0, 0], [side, 0], [0, side], [side, side]]), side


def compare(dlib_lm: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(largest corner shift of the aligned box / face size, mean point distance / inter-ocular distance)."""
    a, side = frame_corners(dlib_lm)
    b, _ = frame_corners(other)
    iod = np.linalg.norm((dlib_lm[0] + dlib_lm[1]) / 2 - (dlib_lm[2] + dlib_lm[3]) / 2)
    return float(np.linalg.norm(a - b, axis=1).max() / side), float(np.linalg.norm(dlib_lm - other, axis=1).mean() / iod)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--n", type=int, default=2000, help="photos drawn (seed 0)")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        raise SystemExit(f"{a.data}: UTKFace folder not found")
    files = sorted(p for p in a.data.iterdir() if p.is_file())
    files = random.Random(0).sample(files, min(a.n, len(files)))
    dlib, mtcnn = get_detector("dlib"), MTCNN(points=0)
    pairs = []
    for p in files:
        im = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
        dd = dlib.detect(im)
        boxes, pts = mtcnn.detect_raw(im)
        if not dd or not len(boxes):
            continue
        pairs.append((dd[0].landmarks.astype(np.float64), pts[0], im))
    half = len(pairs) // 2
    unit = np.array([apply_affine(template_matrix(d), m[:3] + 0.5) for d, m, _ in pairs[:half]])
    mean = unit.mean(0)
    print("MTCNN_IN_BOX =", np.round(mean, 4).tolist())
    import agekit.face.mtcnn as mod

    mod.MTCNN_IN_BOX = mean
    rows = {"mtcnn_in_box": [], "eye_centres": [], "dlib_in_mtcnn_box": []}
    for d, m, im in pairs[half:]:
        rows["mtcnn_in_box"].append(compare(d, mtcnn_to_dlib5(m).astype(np.float64)))
        rows["dlib_in_mtcnn_box"].append(compare(d, refine_landmarks(im, mtcnn_to_dlib5(m)).astype(np.float64)))
        rows["eye_centres"].append(compare(d, _five_from_eyes_nose(m[1], m[0], m[2]).astype(np.float64)))
    summary = {}
    for k, v in rows.items():
        v = np.array(v)
        summary[k] = {"corner_shift_mean": round(float(v[:, 0].mean()), 4),
                      "corner_shift_p95": round(float(np.percentile(v[:, 0], 95)), 4),
                      "point_error_mean_iod": round(float(v[:, 1].mean()), 4),
                      "point_error_median_iod": round(float(np.median(v[:, 1])), 4)}
        print(k, summary[k])
    result = {"command": "python experiments/mtcnn_landmarks.py" + (f" --n {a.n}" if a.n != 2000 else ""),
              "photos": len(files), "faces_found_by_both": len(pairs), "fit_faces": half, "test_faces": len(pairs) - half,
              "mtcnn_in_box": np.round(mean, 4).tolist(), "template": np.round(FACE5_TEMPLATE, 4).tolist(),
              "conversions": summary}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
