"""A prepared cache in one compressed file: move it to another machine (a GPU box) and unpack it there.

A 64x64 UTKFace view is 280 MB of raw uint8 crops; the same crops as JPEG (quality 95) take
about a fifth of that, as PNG about a half. ``pack_cache`` writes chosen views (each crop
encoded on its own), the metadata columns, the split files and ``info.json`` into one
``.npz`` (no pickles); ``unpack_cache`` rebuilds a cache directory that
:class:`~agekit.data.cache.PreparedCache` and ``agekit train`` read as usual. PNG is lossless;
JPEG and WebP are not, and ``info.json`` of the unpacked cache records the codec, so that a
model trained on it says so in its card.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from agekit.data.cache import PreparedCache, write_cache

CODECS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
FORMAT = "agekit-portable-cache-1"


def _encode(crop: np.ndarray, codec: str, quality: int) -> bytes:
    import cv2

    bgr = np.ascontiguousarray(crop[..., ::-1])
    params: list[int] = []
    if codec == "jpeg":
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif codec == "webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    elif codec == "png":
        params = [cv2.IMWRITE_PNG_COMPRESSION, 9]
    ok, buf = cv2.imencode(CODECS[codec], bgr, params)
    if not ok:
        raise ValueError(f"could not encode a {crop.shape} crop as {codec}")
    return buf.tobytes()


def _decode(data: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    import cv2

    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None or img.shape != tuple(shape):
        raise ValueError(f"corrupt crop in the packed cache (expected {shape}, got {None if img is None else img.shape})")
    return img[..., ::-1]


def pack_cache(
    cache: str | Path | PreparedCache,
    out: str | Path,
    views: Sequence[str] | None = None,
    codec: str = "jpeg",
    quality: int = 95,
    protocols: Sequence[str] | None = None,
    progress: bool = False,
) -> dict:
    """Write ``views`` (default: all) of ``cache`` with its metadata and splits into ``out`` (.npz); returns a summary."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}, got {codec!r}")
    c = cache if isinstance(cache, PreparedCache) else PreparedCache(cache)
    views = list(views or c.views)
    missing = [v for v in views if v not in c.views]
    if missing:
        raise KeyError(f"{c.root}: no view(s) {missing}; the cache has {c.views}")
    protocols = list(protocols or c.protocols)
    arrays: dict[str, np.ndarray] = {f"meta/{k}": v for k, v in c.meta.items()}
    splits = {p: {k: v.tolist() for k, v in c.splits(p).items()} for p in protocols}
    header = {"format": FORMAT, "codec": codec, "quality": int(quality), "views": {}, "splits": splits, "info": c.info}
    for key in views:
        v = c.view(key)
        crop_shape = v.shape[-3:]
        flat = v.reshape((-1,) + crop_shape)
        rows = range(len(flat))
        if progress:
            from tqdm import tqdm

            rows = tqdm(rows, desc=f"pack {key}", unit="crop")
        blobs = [_encode(np.asarray(flat[i]), codec, quality) for i in rows]
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"view/{key}/data"] = np.frombuffer(b"".join(blobs), np.uint8)
        arrays[f"view/{key}/offsets"] = offsets
        header["views"][key] = {"shape": list(v.shape), "bytes": int(offsets[-1])}
    arrays["header"] = np.frombuffer(json.dumps(header, default=str).encode(), np.uint8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)  # the crops are already compressed; the metadata strings are not
    return {"out": str(out), "bytes": out.stat().st_size, "rows": len(c), "views": header["views"], "codec": codec}


def unpack_cache(packed: str | Path, out_dir: str | Path, views: Sequence[str] | None = None) -> PreparedCache:
    """Rebuild a cache directory from a file written by :func:`pack_cache`."""
    with np.load(packed, allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes().decode())
        if header.get("format") != FORMAT:
            raise ValueError(f"{packed}: not an agekit packed cache (format {header.get('format')!r})")
        meta = {k[5:]: z[k] for k in z.files if k.startswith("meta/")}
        out_views = {}
        for key, v in header["views"].items():
            if views is not None and key not in views:
                continue
            shape = tuple(v["shape"])
            crop_shape = shape[-3:]
            data, off = z[f"view/{key}/data"], z[f"view/{key}/offsets"]
            arr = np.empty((int(np.prod(shape[:-3])),) + crop_shape, np.uint8)
            for i in range(len(arr)):
                arr[i] = _decode(data[off[i]:off[i + 1]], crop_shape)
            out_views[key] = arr.reshape(shape)
    info = dict(header.get("info") or {})
    info["packed"] = {"codec": header["codec"], "quality": header["quality"], "from": str(packed)}
    splits = {p: {k: np.asarray(v, np.int64) for k, v in s.items() if not k.startswith("_")}
              for p, s in header["splits"].items()}
    return write_cache(out_dir, meta, out_views, splits, info)
