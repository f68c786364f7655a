"""agekit's native weight file: a ``.safetensors`` file, data only, readable without torch.

The tensors are the network's state dict; the header's metadata holds, as JSON strings,
everything needed to rebuild and feed the network::

    "agekit": "agekit-safetensors-1", "model": <registry name>, "config": {...},
    "preprocess": {...}, "method": <training method name or null>, "card": {...}

Nothing in such a file is executed when it is read: the header is JSON and the tensors are
raw bytes (the ``safetensors`` library checks that every tensor lies inside the file and
that no two overlap). This module imports numpy and safetensors only, so the predictor can
read cards, preprocessing and weights without torch; :func:`agekit.models.checkpoint.load_checkpoint`
rebuilds the torch network from the same file.

:func:`check_state` is the validation every loaded weight goes through before use: names and
shapes exactly as the model's (no broadcasting), floating-point tensors where the model has
them, every value finite, BatchNorm running variances >= 0. Its errors are one line naming
the file and the tensor.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "agekit-safetensors-1"
FORMAT_KEY = "agekit"
META_FIELDS = ("model", "config", "preprocess", "method", "card")
SUFFIX = ".safetensors"
MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit


class WeightFileError(ValueError):
    """A weight file that cannot be used; the message is one line naming the file (and the tensor)."""


def one_line(text: Any) -> str:
    """``text`` on one line (newlines of library messages folded)."""
    return " ".join(str(text).split())


def _err(path: str | Path, what: str) -> WeightFileError:
    return WeightFileError(one_line(f"{path}: {what}"))


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` starts like a safetensors file (8-byte little-endian header length, then a JSON object)."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and 2 <= n <= min(MAX_HEADER, size - 8)


def _decode_meta(path: str | Path, raw: Mapping[str, str] | None) -> dict[str, Any]:
    raw = dict(raw or {})
    if raw.get(FORMAT_KEY) != FORMAT:
        raise _err(path, f"a safetensors file without agekit metadata (no {FORMAT_KEY!r}: {FORMAT!r} in its header); "
                         "agekit writes its weights with `agekit.models.checkpoint.save_checkpoint`")
    meta: dict[str, Any] = {"format": FORMAT}
    for k in META_FIELDS:
        try:
            meta[k] = json.loads(raw[k]) if k in raw else None
        except json.JSONDecodeError as e:
            raise _err(path, f"header field {k!r} is not valid JSON ({e})") from None
    if not isinstance(meta["model"], str) or not meta["model"]:
        raise _err(path, "header field 'model' must name a registered network")
    for k in ("config", "card"):
        meta[k] = {} if meta[k] is None else meta[k]
        if not isinstance(meta[k], dict):
            raise _err(path, f"header field {k!r} must be a JSON object, not {type(meta[k]).__name__}")
    if meta["preprocess"] is not None and not isinstance(meta["preprocess"], dict):
        raise _err(path, "header field 'preprocess' must be a JSON object")
    if meta["method"] is not None and not isinstance(meta["method"], str):
        raise _err(path, "header field 'method' must be a string or null")
    return meta


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The agekit metadata of a weight file (``format``, ``model``, ``config``, ``preprocess``, ``method``, ``card``).

    Reads the header only (no tensor is touched) and needs no torch.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such weight file")
    if not is_safetensors(path):
        raise _err(path, "not a safetensors file")
    try:
        with safe_open(str(path), framework="np") as f:
            raw = f.metadata()
    except Exception as e:  # safetensors' own checks of the header
        raise _err(path, f"not a valid safetensors file ({e})") from None
    return _decode_meta(path, raw)


def read_weights(path: str | Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(metadata, tensors as numpy arrays) of an agekit weight file, without torch.

    The tensors are checked for dtype and finiteness here (every value finite, BatchNorm
    variances >= 0); shapes are checked against a network with :func:`check_state`.
    """
    from safetensors import safe_open

    meta = read_metadata(path)
    try:
        with safe_open(str(path), framework="np") as f:
            tensors = {k: np.array(f.get_tensor(k)) for k in f.keys()}  # a copy: the file may be replaced later
    except Exception as e:
        raise _err(path, f"cannot read its tensors ({e})") from None
    check_values(path, tensors)
    return meta, tensors


def _atomic_target(path: Path) -> tuple[Path, int]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    return Path(tmp), fd


def write_weights(path: str | Path, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> Path:
    """Write ``tensors`` and the agekit ``meta`` fields (JSON) as a safetensors file, atomically; returns ``path``.

    The file is written next to ``path`` under a temporary name and renamed over it, so a
    crash or a full disk never leaves a half-written weight file under the real name.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    header = {FORMAT_KEY: FORMAT}
    for k in META_FIELDS:
        header[k] = json.dumps(_jsonable(meta.get(k)), allow_nan=False)
    arrays = {k: np.array(v, order="C", copy=None) for k, v in tensors.items()}  # keeps 0-d tensors 0-d
    check_values(path, arrays)
    tmp, fd = _atomic_target(path)
    os.close(fd)
    try:
        save_file(arrays, str(tmp), metadata=header)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _jsonable(o: Any) -> Any:
    """``o`` as plain JSON data: numpy values as numbers and lists, non-finite floats as null, other objects as text."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.generic):
        return _jsonable(o.item())
    if isinstance(o, float):
        return o if np.isfinite(o) else None
    if o is None or isinstance(o, (str, int, bool)):
        return o
    return str(o)


def _name(dtype: Any) -> str:
    return str(dtype).replace("torch.", "")


def _kind(dtype: Any) -> str:
    """'float', 'int' or 'bool' for a numpy or torch dtype (torch dtypes by name, so torch is not imported)."""
    name = str(dtype).replace("torch.", "")
    if name.startswith(("float", "bfloat", "half", "double")) or name in ("f", "d", "e"):
        return "float"
    if name == "bool":
        return "bool"
    if name.startswith(("int", "uint", "long", "short")):
        return "int"
    return name  # complex, object, strings: never valid in a weight file


def check_values(path: str | Path, tensors: Mapping[str, Any]) -> None:
    """Every tensor numeric (floating point, integer or bool), every float value finite, BN variances >= 0.

    ``tensors`` holds numpy arrays or torch tensors. A failure is one line naming the file and the tensor.
    """
    for name, t in tensors.items():
        kind = _kind(t.dtype)
        if kind not in ("float", "int", "bool"):
            raise _err(path, f"tensor {name!r} has dtype {_name(t.dtype)}, not a number type")
        if kind != "float":
            continue
        a = _as_numpy(t)
        finite = np.isfinite(a)
        if not finite.all():
            bad = int(a.size - np.count_nonzero(finite))
            raise _err(path, f"tensor {name!r} holds {bad} non-finite value(s) (NaN or inf) of {a.size}")
        if name.rsplit(".", 1)[-1] == "running_var" and a.size and float(a.min()) < 0:
            raise _err(path, f"tensor {name!r} (a BatchNorm running variance) has negative values (min {float(a.min()):g})")


def _as_numpy(t: Any) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    t = t.detach().cpu()
    if str(t.dtype) == "torch.bfloat16":
        t = t.float()
    return t.numpy()


def check_state(path: str | Path, state: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """``state`` fits a network whose own state dict is ``expected``: the same names, exactly the same shapes
    (no broadcasting), floating point where the network is, integer where it is; plus :func:`check_values`.

    Both map names to numpy arrays or torch tensors. A failure is one line naming the file and the tensor.
    """
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise _err(path, f"tensor {missing[0]!r} of the network is missing from the file{more}")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise _err(path, f"tensor {extra[0]!r} is not part of the network{more}")
    for k, ref in expected.items():
        t = state[k]
        if tuple(t.shape) != tuple(ref.shape):
            raise _err(path, f"tensor {k!r} has shape {tuple(t.shape)}, the network's is {tuple(ref.shape)}")
        want, got = _kind(ref.dtype), _kind(t.dtype)
        if want == "float" and got != "float":
            raise _err(path, f"tensor {k!r} has dtype {_name(t.dtype)}, the network needs floating point")
        if want != "float" and got == "float":
            raise _err(path, f"tensor {k!r} has dtype {_name(t.dtype)}, the network needs {_name(ref.dtype)}")
    check_values(path, state)


def add_trust_pickle_argument(parser: Any) -> None:
    """Add ``--trust-pickle`` to a sub-command that loads checkpoints (``agekit.cli.main`` applies it)."""
    parser.add_argument(
        "--trust-pickle", action="store_true",
        help="load old .pt/.ckpt files that need Python objects beyond tensors and plain data as full pickles. "
             "Code in such a file runs: use it only for files you made or trust (better: convert them once "
             "with `agekit convert-checkpoint OLD.pt NEW.safetensors --trust-pickle`)")


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in chunks (weights, graphs, checkpoints named in cards and result files)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
