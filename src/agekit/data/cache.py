"""The prepared cache: face crops computed once, stored as memory-mappable uint8 arrays.

Layout of a cache directory::

    meta.npz              one array per column of META_COLUMNS, length N; ``agekit prepare`` adds
                          origin_split (str, the dataset's own split/fold), box (N, 4) float32
                          detected face box in source pixels, score (float32 detector score)
    views/{key}.npy       uint8 (N, *shape) RGB channels-last, one per PreprocessSpec.view_key
    splits/{protocol}.json  {split name: [row indices]}
    info.json             dataset, settings, counts of kept/dropped/duplicates

``np.load(views/key.npy, mmap_mode="r")`` reads a view without loading it: a data loader
touches only the rows of its batch.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

META_COLUMNS: dict[str, Any] = {
    "age": np.float32,
    "age_std": np.float32,
    "gender": np.int8,
    "race": np.int8,
    "age_group": np.int8,
    "subject": np.str_,
    "hash": np.str_,
    "source": np.str_,
    "face_index": np.int16,
}
_FILL = {"age": np.nan, "age_std": np.nan, "gender": -1, "race": -1, "age_group": -1, "subject": "",
         "face_index": 0}


def normalize_meta(meta: dict[str, Any], n: int | None = None) -> dict[str, np.ndarray]:
    """Columns cast to META_COLUMNS' dtypes, missing optional columns filled with "unknown".

    ``hash`` and ``source`` are required. Extra columns are kept as given.
    """
    if n is None:
        n = len(next(iter(meta.values()))) if meta else 0
    out: dict[str, np.ndarray] = {}
    for col, dtype in META_COLUMNS.items():
        if col in meta:
            a = np.asarray(meta[col])
            if dtype is not np.str_ and np.issubdtype(dtype, np.integer) and a.size:
                _check_fits(col, a, dtype)
            out[col] = a.astype(str) if dtype is np.str_ else a.astype(dtype)
        elif col in _FILL:
            out[col] = np.full(n, _FILL[col], dtype=str if dtype is np.str_ else dtype)
        else:
            raise ValueError(f"meta needs a {col!r} column")
    for col, a in meta.items():
        if col not in out:
            out[col] = np.asarray(a)
    for col, a in out.items():
        if a.shape[:1] != (n,):
            raise ValueError(f"meta column {col!r} has length {len(a)}, expected {n}")
        if a.dtype == object:
            raise ValueError(f"meta column {col!r} has dtype object; use numbers or str")
    return out


_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}")


def check_name(name: Any, what: str = "name") -> str:
    """``name`` when it is safe as one file name in a cache folder (a view key, a protocol, a split, a meta
    column): 1-200 of ``A-Z a-z 0-9 _ . + -``, not starting with ``.`` or ``-`` and without ``..``, so no
    separator, no parent folder, no absolute path, no NUL; else ValueError naming it."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(f"{what} {str(name)[:80]!r} is not a safe name (letters, digits, _ . + -; no '..', "
                         f"no separators)")
    return name


def _check_fits(col: str, a: np.ndarray, dtype: Any) -> None:
    """ValueError naming the first row of ``a`` that ``dtype`` cannot hold exactly (no wrap-around, no rounding)."""
    info = np.iinfo(dtype)
    try:
        v = a.astype(np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"meta column {col!r} is not numeric ({a.dtype})") from None
    bad = ~np.isfinite(v) | (v < info.min) | (v > info.max) | (v != np.round(v))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"meta column {col!r}: row {i} holds {a.reshape(-1)[i].item()!r}, not an integer in "
                         f"[{info.min}, {info.max}]")


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, default=_json_default))
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_meta(root: str | Path, meta: dict[str, Any]) -> dict[str, np.ndarray]:
    """Write ``meta.npz`` (uncompressed, no pickles) and return the normalised columns."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cols = normalize_meta(meta)
    tmp = root / "meta.tmp.npz"
    np.savez(tmp, **cols)
    os.replace(tmp, root / "meta.npz")
    return cols


def create_view(root: str | Path, key: str, shape: tuple[int, ...]) -> np.memmap:
    """A writable uint8 ``views/{key}.npy`` of ``shape`` (N, ...), to be filled in place (large caches)."""
    check_name(key, "view key")
    d = Path(root) / "views"
    d.mkdir(parents=True, exist_ok=True)
    return np.lib.format.open_memmap(d / f"{key}.npy", mode="w+", dtype=np.uint8, shape=tuple(shape))


def write_cache(root: str | Path, meta: dict[str, np.ndarray], views: dict[str, np.ndarray],
                splits: dict[str, dict[str, np.ndarray]] | None = None, info: dict | None = None) -> PreparedCache:
    """Build a cache from in-memory arrays: meta columns, uint8 views (N, ...), splits per protocol."""
    root = Path(root)
    for key in views:
        check_name(key, "view key")
    for protocol, s in (splits or {}).items():
        check_name(protocol, "protocol")
        for name in s:
            check_name(name, "split name")
    cols = write_meta(root, meta)
    n = len(cols["hash"])
    (root / "views").mkdir(parents=True, exist_ok=True)
    for key, arr in views.items():
        check_name(key, "view key")
        a = np.asarray(arr)
        if a.dtype != np.uint8:
            raise ValueError(f"view {key!r} must be uint8, got {a.dtype}")
        if len(a) != n:
            raise ValueError(f"view {key!r} has {len(a)} rows, meta has {n}")
        tmp = root / "views" / f"{key}.tmp.npy"
        np.save(tmp, a)
        os.replace(tmp, root / "views" / f"{key}.npy")
    info = dict(info or {})
    info.setdefault("rows", n)
    _atomic_json(root / "info.json", info)
    cache = PreparedCache(root)
    for protocol, s in (splits or {}).items():
        cache.write_splits(protocol, s)
    return cache


class PreparedCache:
    """A prepared cache directory: metadata table, memory-mapped uint8 views and split files."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        meta_path = self.root / "meta.npz"
        if not meta_path.exists():
            raise FileNotFoundError(f"{self.root} is not a prepared cache (no meta.npz)")
        with np.load(meta_path, allow_pickle=False) as z:
            self.meta: dict[str, np.ndarray] = {k: z[k] for k in z.files}
        info_path = self.root / "info.json"
        self.info: dict = json.loads(info_path.read_text()) if info_path.exists() else {}
        self._views: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.meta["hash"])

    def __repr__(self) -> str:
        return f"PreparedCache({str(self.root)!r}, rows={len(self)}, views={self.views}, protocols={self.protocols})"

    @property
    def views(self) -> list[str]:
        """Available view keys (``PreprocessSpec.view_key``)."""
        d = self.root / "views"
        return sorted(p.name[:-4] for p in d.glob("*.npy") if not p.name.endswith(".tmp.npy")) if d.is_dir() else []

    @property
    def protocols(self) -> list[str]:
        """Available split files (protocol names)."""
        d = self.root / "splits"
        return sorted(p.stem for p in d.glob("*.json")) if d.is_dir() else []

    def view(self, key: str) -> np.ndarray:
        """Read-only memmap uint8 (N, *shape) of the view ``key``, RGB channels-last."""
        if key not in self._views:
            path = self.root / "views" / f"{key}.npy"
            if not path.exists():
                raise KeyError(f"view {key!r} not in {self.root}; available: {self.views}")
            self._views[key] = np.load(path, mmap_mode="r")
        return self._views[key]

    def splits(self, protocol: str) -> dict[str, np.ndarray]:
        """Split name -> int64 row indices of ``protocol``."""
        path = self.root / "splits" / f"{protocol}.json"
        if not path.exists():
            raise KeyError(f"protocol {protocol!r} not in {self.root}; available: {self.protocols}")
        raw = json.loads(path.read_text())
        return {k: np.asarray(v, dtype=np.int64) for k, v in raw.items() if not k.startswith("_")}

    def write_splits(self, protocol: str, splits: dict[str, np.ndarray]) -> None:
        """Write ``splits/{protocol}.json``; indices must be valid rows."""
        check_name(protocol, "protocol")
        n = len(self)
        out = {}
        for name, idx in splits.items():
            check_name(name, "split name")
            a = np.asarray(idx, dtype=np.int64).reshape(-1)
            if a.size and (a.min() < 0 or a.max() >= n):
                raise ValueError(f"split {protocol}/{name} has row indices outside [0, {n})")
            out[name] = a.tolist()
        d = self.root / "splits"
        d.mkdir(parents=True, exist_ok=True)
        _atomic_json(d / f"{protocol}.json", out)
