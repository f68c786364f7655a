"""Typed results of :meth:`agekit.Estimator.predict`: one :class:`PhotoResult` per input, one :class:`FaceResult`
per face.

Both are dataclasses with ``to_dict()`` (the record ``agekit predict --json`` prints, one per line for photos and
video frames alike) and read like the dicts of earlier versions (``result["faces"]``, ``face.get("age")``).
``to_dict(rounded=True)`` gives the precision of the command's CSV and JSON output (:data:`PRECISION`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

# Decimals written by ``agekit predict --json/--csv/--out`` (the Python results keep full float precision):
# ages and their +- in years to 0.01, probabilities and detector scores to 0.001, boxes to whole pixels,
# landmarks to 0.1 pixel.
PRECISION = {"age": 2, "age_smoothed": 2, "uncertainty": 2, "gender_female": 3, "gender_female_smoothed": 3,
             "score": 3, "age_group_probs": 3, "box": 0, "landmarks": 1}


def _round(v: Any, nd: int) -> Any:
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (list, tuple)):
        return [_round(x, nd) for x in v]
    if isinstance(v, float):
        return int(round(v)) if nd == 0 else round(v, nd)
    return v


class _Record(dict):
    """A dataclass that is also the plain dict of its fields: ``result["faces"]``, ``json.dumps(result)``,
    ``{**result}`` work as with the dicts of earlier versions, and the attributes stay in step with the items. Keys
    that are not fields (a server's crops, say) are kept in ``extras`` and in the dict."""

    extras: dict[str, Any]

    def _names(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self) if f.name != "extras")  # type: ignore[arg-type]

    def __post_init__(self) -> None:
        dict.update(self, self.extras)

    def __setattr__(self, key: str, value: Any) -> None:
        object.__setattr__(self, key, value)
        if key != "extras":
            dict.__setitem__(self, key, value)

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._names():
            object.__setattr__(self, key, value)
        else:
            self.__dict__.setdefault("extras", {})[key] = value
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        if key in self._names():
            raise KeyError(f"{key} is a field of {type(self).__name__}; set it to None instead")
        self.extras.pop(key, None)
        dict.__delitem__(self, key)

    def _plain(self, rounded: bool) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in self.items():
            if isinstance(v, list) and v and isinstance(v[0], _Record):
                v = [x.to_dict(rounded) for x in v]  # type: ignore[attr-defined]
            elif rounded and k in PRECISION:
                v = _round(v, PRECISION[k])
            d[k] = v
        return d


@dataclass
class FaceResult(_Record):
    """One face: its ``box`` (x1, y1, x2, y2 in pixels, within the image), the detector's ``score``, the 5 (or 68)
    ``landmarks`` (x, y), the ``age`` in years and its ``uncertainty`` (+-: the standard deviation of the model's
    age distribution, years; None for networks without one), ``gender`` ("female"/"male") and ``gender_female``
    (P(female)); ``age_group``/``age_group_probs`` for age-group networks; ``error`` when the networks gave no
    finite output for this face. In a video, ``track`` numbers one face across frames and ``age_smoothed`` /
    ``gender_female_smoothed`` are its smoothed figures (None for photos)."""

    box: list[float]
    score: float | None = None
    landmarks: list[list[float]] | None = None
    detector: str | None = None
    age: float | None = None
    uncertainty: float | None = None
    gender: str | None = None
    gender_female: float | None = None
    age_group: int | None = None
    age_group_probs: list[float] | None = None
    error: str | None = None
    track: int | None = None
    age_smoothed: float | None = None
    gender_female_smoothed: float | None = None
    extras: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FaceResult:
        names = {f.name for f in fields(cls)} - {"extras"}
        return cls(**{k: v for k, v in d.items() if k in names}, extras={k: v for k, v in d.items() if k not in names})

    def to_dict(self, rounded: bool = False) -> dict[str, Any]:
        """A plain dict (JSON-ready); ``rounded``: to :data:`PRECISION`."""
        return self._plain(rounded)


@dataclass
class PhotoResult(_Record):
    """One input (a photo, an array, a video frame): its ``source`` (the path, ``array[i]``, ``bytes[i]``, ...),
    the kept ``faces``, the ``dropped`` detections with their reasons, and ``error`` (why the input gave no
    result: unreadable, not an image, no face, ...; None otherwise). Video frames carry ``frame`` (its number) and
    ``time_s`` (seconds from the start); photos have None there, so photos and frames share one shape."""

    source: str
    faces: list[FaceResult] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    frame: int | None = None
    time_s: float | None = None
    extras: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhotoResult:
        names = {f.name for f in fields(cls)} - {"extras", "faces"}
        faces = [f if isinstance(f, FaceResult) else FaceResult.from_dict(f) for f in d.get("faces") or []]
        return cls(**{k: v for k, v in d.items() if k in names}, faces=faces,
                   extras={k: v for k, v in d.items() if k not in names and k != "faces"})

    @property
    def ok(self) -> bool:
        """True when the input was read and at least one face was found."""
        return self.error is None and bool(self.faces)

    def to_dict(self, rounded: bool = False) -> dict[str, Any]:
        """A plain dict (JSON-ready): the record of ``agekit predict --json``; ``rounded``: to :data:`PRECISION`."""
        d = self._plain(rounded)
        if rounded:
            d["dropped"] = [{k: _round(v, PRECISION[k]) if k in PRECISION else v for k, v in x.items()}
                            for x in self.dropped]
        return d


def as_plain(r: Any, rounded: bool = False) -> dict[str, Any]:
    """A result as a plain dict, whether typed or already a dict."""
    return r.to_dict(rounded) if isinstance(r, _Record) else dict(r)
