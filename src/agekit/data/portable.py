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

import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agekit.data.cache import PreparedCache, _atomic_json, check_name, create_view, write_meta

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


# What unpack_cache accepts before it decompresses anything (see its docstring).
MAX_HEADER_BYTES = 256 * 2**20
MAX_META_BYTES = 4 * 2**30
MAX_UNPACKED_BYTES = 256 * 2**30
_CROP_OVERHEAD = 1.1, 4096  # an encoded crop is at most 1.1x its raw bytes plus 4 KB (PNG of noise: ~1.01x)


class UnsafePack(ValueError):
    """A packed cache refused before anything was decompressed or written: a bad name, a size that does not
    match the header, or more than the cap."""


def _member_array_header(zf: Any, name: str) -> tuple[tuple[int, ...], np.dtype, int, int]:
    """(shape, dtype, header bytes, declared uncompressed size) of ``name`` in the zip, from its .npy header only."""
    info = zf.getinfo(name)
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise UnsafePack(f"member {name!r}: unsupported .npy version {version}")
        header_len = f.tell()
    if dtype.hasobject:
        raise UnsafePack(f"member {name!r}: dtype {dtype} holds Python objects")
    expected = header_len + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if info.file_size != expected:
        raise UnsafePack(f"member {name!r}: declares {info.file_size} bytes, its shape {shape} and dtype {dtype} "
                         f"make {expected}")
    return tuple(shape), dtype, header_len, info.file_size


def _int_list(x: Any, what: str) -> list[int]:
    if not isinstance(x, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in x):
        raise UnsafePack(f"{what} must be a list of non-negative integers")
    return x


def check_pack(packed: str | Path, views: Sequence[str] | None = None, max_bytes: int = MAX_UNPACKED_BYTES,
               zf: Any = None) -> dict:
    """Validate a packed cache from its zip directory and the members' .npy headers, decompressing only the
    header member: names (:func:`~agekit.data.cache.check_name`), every member's declared size against the
    shape and dtype it declares, the views' shapes and encoded sizes against the row count, and the total
    unpacked size against ``max_bytes``. Returns a plan: header, rows, the views to unpack, total bytes.
    Raises :class:`UnsafePack` (a ValueError) naming the problem."""

    own = zf is None
    try:
        if own:
            zf = zipfile.ZipFile(packed)
        names = set(zf.namelist())
        if "header.npy" not in names:
            raise UnsafePack(f"{packed}: not an agekit packed cache (no header)")
        shape, dtype, _, size = _member_array_header(zf, "header.npy")
        if dtype != np.uint8 or len(shape) != 1 or size > MAX_HEADER_BYTES:
            raise UnsafePack(f"{packed}: header member is {dtype} {shape} ({size} bytes; at most "
                             f"{MAX_HEADER_BYTES} bytes of uint8)")
        with zf.open("header.npy") as f:
            np.lib.format.read_magic(f)
            raw = f.read()
        raw = raw[-shape[0]:] if shape[0] else b""
        try:
            header = json.loads(raw.decode())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UnsafePack(f"{packed}: header is not JSON ({e})") from None
        if not isinstance(header, dict):
            raise UnsafePack(f"{packed}: header is not a JSON object")
        if header.get("format") != FORMAT:
            raise UnsafePack(f"{packed}: not an agekit packed cache (format {header.get('format')!r})")
        if header.get("codec") not in CODECS:
            raise UnsafePack(f"{packed}: unknown codec {header.get('codec')!r}")
        try:
            # meta columns: names are keys of meta.npz; each a 1-D (or N x k) array of the same length
            meta_members = sorted(n for n in names if n.startswith("meta/"))
            rows, meta_bytes = None, 0
            for m in meta_members:
                if not m.endswith(".npy"):
                    raise UnsafePack(f"member {m!r} is not an array")
                check_name(m[5:-4], "meta column")
                shp, _, _, size = _member_array_header(zf, m)
                if not shp or (rows is not None and shp[0] != rows):
                    raise UnsafePack(f"meta column {m[5:-4]!r} has shape {shp}, other columns have {rows} rows")
                rows = shp[0]
                meta_bytes += size
            if rows is None or "meta/hash.npy" not in names or "meta/source.npy" not in names:
                raise UnsafePack("the pack has no meta/hash and meta/source columns")
            if meta_bytes > MAX_META_BYTES:
                raise UnsafePack(f"meta columns hold {meta_bytes} bytes, more than {MAX_META_BYTES}")
            hv = header.get("views")
            if not isinstance(hv, dict):
                raise UnsafePack("header 'views' is not an object")
            plan_views, total = {}, meta_bytes
            for key, v in hv.items():
                check_name(key, "view key")
                if views is not None and key not in views:
                    continue
                if not isinstance(v, dict):
                    raise UnsafePack(f"view {key!r}: not an object in the header")
                vshape = _int_list(v.get("shape"), f"view {key!r} shape")
                if len(vshape) < 4 or vshape[0] != rows or vshape[-1] != 3 or not (0 < vshape[-2] <= 4096 and
                                                                                 0 < vshape[-3] <= 4096):
                    raise UnsafePack(f"view {key!r}: shape {vshape} is not ({rows}, ..., H, W, 3) with H, W <= 4096")
                crops = int(np.prod(vshape[:-3], dtype=np.int64))
                crop_bytes = int(np.prod(vshape[-3:], dtype=np.int64))
                dshape, ddtype, _, _ = _member_array_header(zf, f"view/{key}/data.npy")
                oshape, odtype, _, _ = _member_array_header(zf, f"view/{key}/offsets.npy")
                if ddtype != np.uint8 or len(dshape) != 1:
                    raise UnsafePack(f"view {key!r}: encoded data is {ddtype} {dshape}, not 1-D uint8")
                if odtype.kind not in "iu" or oshape != (crops + 1,):
                    raise UnsafePack(f"view {key!r}: offsets are {odtype} {oshape}, expected ({crops + 1},) integers")
                limit = crops * (crop_bytes * _CROP_OVERHEAD[0] + _CROP_OVERHEAD[1])
                if dshape[0] > limit or dshape[0] != v.get("bytes", dshape[0]):
                    raise UnsafePack(f"view {key!r}: {dshape[0]} encoded bytes for {crops} crops of {crop_bytes} "
                                     f"bytes (header says {v.get('bytes')}; at most {int(limit)})")
                plan_views[key] = (tuple(vshape), dshape[0])
                total += crops * crop_bytes
            if views is not None and set(views) - set(plan_views):
                raise UnsafePack(f"no view(s) {sorted(set(views) - set(plan_views))} in the pack; it has {sorted(hv)}")
            splits = header.get("splits") or {}
            if not isinstance(splits, dict):
                raise UnsafePack("header 'splits' is not an object")
            for protocol, sp in splits.items():
                check_name(protocol, "protocol")
                if not isinstance(sp, dict):
                    raise UnsafePack(f"protocol {protocol!r}: not an object")
                for name, idx in sp.items():
                    check_name(name, "split name")
                    if any(i >= rows for i in _int_list(idx, f"split {protocol}/{name}")):
                        raise UnsafePack(f"split {protocol}/{name} has row indices outside [0, {rows})")
        except KeyError as e:
            raise UnsafePack(f"{packed}: member {e} is missing") from None
        if total > max_bytes:
            raise UnsafePack(f"{packed}: unpacks to {total / 1e9:.2f} GB, more than the cap of {max_bytes / 1e9:.2f} GB")
        return {"header": header, "rows": rows, "views": plan_views, "bytes": total}
    except zipfile.BadZipFile as e:
        raise UnsafePack(f"{packed}: not a zip/npz file ({e})") from None
    finally:
        if own and zf is not None:
            zf.close()


def _decode_checked(blob: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """:func:`_decode`, after the image's own header (read without decoding) gives ``shape``'s size."""

    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob.tobytes())) as im:
            size = im.size
    except Exception as e:  # PIL raises many kinds on garbage
        raise ValueError(f"corrupt crop in the packed cache ({type(e).__name__})") from None
    if (size[1], size[0]) != tuple(shape[:2]):
        raise ValueError(f"corrupt crop in the packed cache (declares {size[0]}x{size[1]}, expected "
                         f"{shape[1]}x{shape[0]})")
    return _decode(blob, shape)


def unpack_cache(packed: str | Path, out_dir: str | Path, views: Sequence[str] | None = None,
                 max_bytes: int = MAX_UNPACKED_BYTES, overwrite: bool = False) -> PreparedCache:
    """Rebuild a cache directory from a file written by :func:`pack_cache`.

    Nothing is decompressed before :func:`check_pack` has checked the pack's names and sizes (and the
    free space next to ``out_dir``); each crop's own header must give the view's crop size before it
    is decoded. The cache is written to a temporary folder next to ``out_dir`` and renamed into place
    at the end: a failure leaves no partial ``out_dir``. An existing non-empty ``out_dir`` is
    refused unless ``overwrite``; then it is replaced only once the new cache is complete.
    """

    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir.is_dir() and not any(out_dir.iterdir())) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another folder or pass --overwrite")
    plan = check_pack(packed, views=views, max_bytes=max_bytes)
    parent = out_dir.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.unpack-", dir=parent))
    except OSError as e:  # named after the target, not the temporary folder
        raise OSError(e.errno, e.strerror, str(out_dir)) from None
    free = shutil.disk_usage(parent).free
    if plan["bytes"] > free:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnsafePack(f"{packed}: unpacks to {plan['bytes'] / 1e9:.2f} GB, {parent} has {free / 1e9:.2f} GB free")
    header = plan["header"]
    try:
        with np.load(packed, allow_pickle=False) as z:
            meta = {k[5:]: z[k] for k in z.files if k.startswith("meta/")}
            write_meta(tmp, meta)
            for key, (shape, _) in plan["views"].items():
                crop_shape = shape[-3:]
                data, off = z[f"view/{key}/data"], z[f"view/{key}/offsets"].astype(np.int64)
                if off[0] != 0 or off[-1] != len(data) or np.any(np.diff(off) < 0):
                    raise UnsafePack(f"view {key!r}: offsets do not cut its {len(data)} bytes in order")
                arr = create_view(tmp, key, shape)
                flat = arr.reshape((-1,) + crop_shape)
                for i in range(len(flat)):
                    flat[i] = _decode_checked(data[off[i]:off[i + 1]], crop_shape)
                arr.flush()
                del arr, flat, data
        info = dict(header.get("info") or {}) if isinstance(header.get("info"), dict) else {}
        info["rows"] = plan["rows"]
        info["packed"] = {"codec": header["codec"], "quality": header.get("quality"), "from": str(packed)}
        _atomic_json(tmp / "info.json", info)
        cache = PreparedCache(tmp)
        for p, sp in (header.get("splits") or {}).items():
            cache.write_splits(p, {k: np.asarray(v, np.int64) for k, v in sp.items() if not k.startswith("_")})
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=parent))
            os.replace(out_dir, old / "cache")
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PreparedCache(out_dir)
