"""Ages in video files and from a webcam: every Nth frame, an IoU tracker and per-track age smoothing.

Per-frame estimates of one face jitter by a few years; a track keeps one face's identity
across frames (greedy IoU matching) so its age can be smoothed with an exponential moving
average or a running median over the last frames.
"""
from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from agekit.face.io import NativeStderr, stat_reason


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class IoUTracker:
    """Greedy IoU tracker: each box joins the free track it overlaps most (IoU >= threshold) or starts one."""

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 10):
        self.iou_threshold = iou_threshold
        self.max_missed = max_missed
        self.tracks: dict[int, dict[str, Any]] = {}  # id -> {"box", "missed"}
        self._next = 0
        self.ended: list[int] = []  # tracks dropped at the last update

    def update(self, boxes: Sequence[Sequence[float]]) -> list[int]:
        """Track ids of ``boxes`` (in order); tracks unseen for more than ``max_missed`` updates end."""
        pairs = sorted(
            ((box_iou(b, t["box"]), i, tid) for i, b in enumerate(boxes) for tid, t in self.tracks.items()),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(boxes)
        used: set[int] = set()
        for iou, i, tid in pairs:
            if iou < self.iou_threshold:
                break
            if ids[i] is None and tid not in used:
                ids[i] = tid
                used.add(tid)
        for i, b in enumerate(boxes):
            if ids[i] is None:
                ids[i] = self._next
                self._next += 1
            self.tracks[ids[i]] = {"box": list(b), "missed": 0}
        seen = set(ids)
        self.ended = []
        for tid in list(self.tracks):
            if tid not in seen:
                self.tracks[tid]["missed"] += 1
                if self.tracks[tid]["missed"] > self.max_missed:
                    del self.tracks[tid]
                    self.ended.append(tid)
        return [int(i) for i in ids]  # type: ignore[arg-type]


class TrackSmoother:
    """Per-track smoothing of a value: EMA ``s = alpha * x + (1 - alpha) * s`` or the median of the last ``window``."""

    def __init__(self, mode: str = "ema", alpha: float = 0.3, window: int = 15):
        if mode not in ("ema", "median"):
            raise ValueError(f"smoothing must be 'ema' or 'median', got {mode!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.mode, self.alpha, self.window = mode, alpha, window
        self.state: dict[int, Any] = {}

    def update(self, track: int, value: float) -> float:
        """Add ``value`` to ``track`` and return its smoothed value."""
        if self.mode == "ema":
            prev = self.state.get(track)
            s = value if prev is None else self.alpha * value + (1.0 - self.alpha) * prev
            self.state[track] = s
            return float(s)
        hist = self.state.setdefault(track, deque(maxlen=self.window))
        hist.append(value)
        return float(np.median(hist))

    def forget(self, tracks: Sequence[int]) -> None:
        """Drop the state of ended tracks."""
        for t in tracks:
            self.state.pop(t, None)


class FaceTrackAges:
    """Tracker plus age and P(female) smoothers: annotates one frame's result in place."""

    def __init__(self, smoothing: str = "ema", alpha: float = 0.3, window: int = 15, iou_threshold: float = 0.3,
                 max_missed: int = 10):
        self.tracker = IoUTracker(iou_threshold, max_missed)
        self.age = TrackSmoother(smoothing, alpha, window)
        self.gender = TrackSmoother(smoothing, alpha, window)

    def __call__(self, result: dict[str, Any]) -> dict[str, Any]:
        faces = result.get("faces", [])
        ids = self.tracker.update([f["box"] for f in faces])
        self.age.forget(self.tracker.ended)
        self.gender.forget(self.tracker.ended)
        for f, tid in zip(faces, ids):
            f["track"] = tid
            if f.get("age") is not None:
                f["age_smoothed"] = self.age.update(tid, f["age"])
            if f.get("gender_female") is not None:
                f["gender_female_smoothed"] = self.gender.update(tid, f["gender_female"])
        return result


UNDECODABLE = "undecodable frame"
ENDS_EARLY = "video ends early"
#: Consecutive frames that may fail to read before the rest of the video is given up.
MAX_BAD_FRAMES = 25


def is_read_error(error: str | None) -> bool:
    """Whether a frame result's error says the frame could not be read (not, e.g., "no face")."""
    return bool(error) and (error.startswith(UNDECODABLE) or error.startswith(ENDS_EARLY))


def open_video(path: str | Path) -> Any:
    """An opened ``cv2.VideoCapture`` of a regular file; raises ``FileNotFoundError`` or ``ValueError`` (one line)."""
    path = Path(path)
    reason = stat_reason(path)  # a FIFO or device would block or never end
    if reason == "missing":
        raise FileNotFoundError(f"{path}: missing")
    if reason is not None:
        raise ValueError(f"{path}: {reason}")
    noise = NativeStderr()
    try:
        with noise:
            cap = cv2.VideoCapture(str(path))
    finally:
        noise.close()
    if not cap.isOpened():
        cap.release()
        raise ValueError(f"{path}: cannot open as a video (truncated, corrupt or an unsupported format)")
    return cap


def read_frames(cap: Any, label: str, every: int = 1, max_frames: int | None = None) -> Iterator[tuple[str, Any]]:
    """``(f"{label}#{i}", RGB frame)`` for every ``every``-th frame; a frame that cannot be read gives
    ``ValueError("undecodable frame")`` and reading goes on; a video that stops before its declared frame
    count (or after :data:`MAX_BAD_FRAMES` bad frames in a row) ends with ``ValueError("video ends early ...")``.
    What the decoders print is captured: a frame they complained about counts as undecodable (FFmpeg hands
    back the previous picture for a corrupt MJPEG frame), and the reason replaces their lines."""
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    noise = NativeStderr()
    try:
        yield from _frames(cap, label, every, max_frames, total, noise)
    finally:
        noise.close()


def _frames(cap: Any, label: str, every: int, max_frames: int | None, total: int, noise: Any
            ) -> Iterator[tuple[str, Any]]:
    done, i, bad = 0, -1, []
    while max_frames is None or done < max_frames:
        i += 1
        with noise:
            grabbed = cap.grab()
            ok, frame = cap.retrieve() if grabbed and i % every == 0 else (grabbed, None)
        if grabbed and noise.text and i % every == 0 and (total <= 0 or i < total):
            done += 1  # read, but the decoder reported an error: the picture cannot be trusted
            yield f"{label}#{i}", ValueError(UNDECODABLE)
            continue
        if not grabbed or (i % every == 0 and (not ok or frame is None)):
            bad.append(i)
            if len(bad) < MAX_BAD_FRAMES and (total <= 0 or i + 1 < total):
                continue
            if total > 0 and bad[0] < total:
                yield f"{label}#{bad[0]}", ValueError(
                    f"{ENDS_EARLY}: frames {bad[0]} to {total - 1} of {total} could not be read (truncated or corrupt)")
            elif total <= 0 and len(bad) >= MAX_BAD_FRAMES and done == 0:
                yield f"{label}#{bad[0]}", ValueError(f"{ENDS_EARLY}: no frame could be read (truncated or corrupt)")
            return
        for j in bad:  # bad frames followed by a good one: each is named, the video goes on
            if j % every == 0:
                yield f"{label}#{j}", ValueError(UNDECODABLE)
        bad = []
        if i % every:
            continue
        done += 1
        yield f"{label}#{i}", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def process_video(
    estimator: Any,
    path: str | Path,
    every: int = 1,
    smoothing: str = "ema",
    alpha: float = 0.3,
    window: int = 15,
    max_frames: int | None = None,
    workers: int = 1,
) -> Iterator[dict[str, Any]]:
    """Per-frame results of every ``every``-th frame of a video file, with ``track`` and ``age_smoothed`` per face.

    ``workers`` > 1: that many processes find the faces of the next frames while this one decodes,
    runs the networks (a few frames' faces at a time) and tracks, in frame order; the results are
    those of ``workers=1``. A frame that cannot be read is a result with ``error`` "undecodable frame"
    and the video goes on; a video cut short ends with a result whose ``error`` starts "video ends early".
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    path = Path(path)
    cap = open_video(path)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    tracks = FaceTrackAges(smoothing, alpha, window)
    try:
        # one frame at a time through the networks when alone; a few frames' faces per batch with workers
        frames = read_frames(cap, str(path), every, max_frames)
        for res in estimator.iter_items(frames, chunk=1 if workers <= 1 else 4 * workers, workers=workers):
            i = int(res["source"].rsplit("#", 1)[1])
            res["frame"] = i
            res["time_s"] = i / fps if fps > 0 else None
            yield res if is_read_error(res["error"]) else tracks(res)  # an unread frame says nothing of the tracks
    finally:
        cap.release()


def draw_faces(image_rgb: np.ndarray, faces: Sequence[dict[str, Any]]) -> np.ndarray:
    """A copy of the image with each face's box and its (smoothed) age and gender written above it."""
    img = np.ascontiguousarray(image_rgb.copy())
    thick = max(1, round(min(img.shape[:2]) / 300))
    for f in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in f["box"])
        cv2.rectangle(img, (x1, y1), (x2, y2), (0, 255, 0), thick)
        age = f.get("age_smoothed", f.get("age"))
        label = []
        if age is not None:
            label.append(f"{age:.0f}")
        if f.get("gender"):
            label.append("F" if f["gender"] == "female" else "M")
        if "track" in f:
            label.append(f"#{f['track']}")
        text = " ".join(label)
        scale = 0.4 * thick + 0.2
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        ty = max(th + 2, y1 - 3)
        cv2.rectangle(img, (x1, ty - th - 2), (x1 + tw + 2, ty + 2), (0, 255, 0), -1)
        cv2.putText(img, text, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return img


def has_display() -> bool:
    """Whether a window can be shown: a display is set and OpenCV was built with a GUI (not the headless wheel)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("agekit-probe", cv2.WINDOW_AUTOSIZE)
        cv2.destroyWindow("agekit-probe")
        return True
    except cv2.error:
        return False


def run_webcam(
    estimator: Any,
    index: int = 0,
    show: bool | None = None,
    every: int = 1,
    smoothing: str = "ema",
    max_frames: int | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """Live ages from camera ``index``: a window when a display exists (q or Esc quits), else ``emit`` per frame.

    Returns the number of frames processed.
    """
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise RuntimeError(f"cannot open camera {index}")
    show = has_display() if show is None else show
    tracks = FaceTrackAges(smoothing)
    n = i = 0
    try:
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            i += 1
            if (i - 1) % every:
                continue
            rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            res = tracks(estimator.predict_image(rgb, source=f"camera{index}#{i - 1}"))
            res["frame"] = i - 1
            n += 1
            if show:
                cv2.imshow("agekit", cv2.cvtColor(draw_faces(rgb, res["faces"]), cv2.COLOR_RGB2BGR))
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            elif emit is not None:
                emit(res)
    finally:
        cap.release()
        if show:
            cv2.destroyAllWindows()
    return n
