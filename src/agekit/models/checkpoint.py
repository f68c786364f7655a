"""agekit checkpoints: weights plus everything needed to rebuild and feed the network.

An agekit checkpoint is a ``.safetensors`` file (see :mod:`agekit.weightfile`): the state
dict as tensors and, as JSON in the header, the registry name of the network (``model``),
its ``config``, the ``preprocess`` spec, the training ``method`` and the model ``card`` (see
:mod:`agekit.inference.cards`: provenance, training data and licence, protocol, metrics,
complexity, latency). Reading one executes nothing. :func:`save_checkpoint` writes that format
(atomically) whatever the file is called; :func:`load_checkpoint` tells the format by the
file's content, not its name.

Older agekit ``.pt`` files (a ``torch.save`` dict ``{"format": "agekit-1", "model", "config",
"preprocess", "method", "state_dict", "card"}``) and Lightning ``.ckpt`` files written by
``agekit train`` (the same keys in ``hyper_parameters``) load with torch's restricted
unpickler (``torch.load(weights_only=True)``): tensors and plain data only. A pickle that needs
any other Python object is refused, never run, unless the caller opts in with
``trust_pickle=True`` (``--trust-pickle`` on the command line), which warns on stderr.
``agekit convert-checkpoint OLD.pt NEW.safetensors --trust-pickle`` converts such a file once.

Every loaded state dict is validated before use (:func:`agekit.weightfile.check_state`): the
network's names and exact shapes, floating point where the network is, all values finite,
BatchNorm running variances >= 0. Every refusal is one line naming the file (and the tensor).
"""
from __future__ import annotations

import contextlib
import pickle
import pickletools
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from agekit.models.registry import create_model, model_entry
from agekit.preprocessing import PreprocessSpec
from agekit.weightfile import WeightFileError, check_state, is_safetensors, one_line, read_weights, write_weights

FORMAT = "agekit-1"  # the dict tag of old torch.save checkpoints
SUFFIX = ".safetensors"

# Python objects beyond tensors and plain containers (which torch's restricted unpickler always allows)
# that agekit's own .pt / .ckpt files may hold; each only rebuilds a value from plain data and runs
# nothing. Every other global is refused.
SAFE_GLOBALS: list[Any] = [type(Path())]  # a path in a recipe or card (pathlib.PosixPath / WindowsPath)


CheckpointError = WeightFileError  # a checkpoint that cannot be used; one line naming the file (and the tensor)


class UnsafeCheckpointError(CheckpointError):
    """A pickle that needs Python objects a data-only load does not run; nothing in it was executed."""


_TRUST_PICKLE = False


def set_trust_pickle(enabled: bool) -> bool:
    """Load every later old-style checkpoint as a full pickle (``--trust-pickle``) or not; returns the old setting."""
    global _TRUST_PICKLE
    old, _TRUST_PICKLE = _TRUST_PICKLE, bool(enabled)
    return old


@contextlib.contextmanager
def trusted_pickles(enabled: bool = True) -> Iterator[None]:
    """Within the block, old ``.pt``/``.ckpt`` checkpoints load as full pickles (code in them runs)."""
    old = set_trust_pickle(enabled)
    try:
        yield
    finally:
        set_trust_pickle(old)


@dataclass
class LoadedModel:
    """A rebuilt network in eval mode with its preprocessing spec and model card."""

    model: nn.Module
    name: str
    config: dict[str, Any]
    preprocess: PreprocessSpec
    method: str | None = None
    card: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    preprocess: PreprocessSpec | None = None,
    method: str | None = None,
    card: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` as an agekit checkpoint (safetensors, fp32 state dict, JSON metadata) and return the path.

    The file is written under a temporary name and renamed over ``path``: a crash never leaves a
    half-written checkpoint under the real name.
    """
    name = name or getattr(model, "agekit_name", None)
    if name is None:
        raise ValueError("save_checkpoint needs the registry name of the model")
    config = dict(config if config is not None else getattr(model, "agekit_config", {}))
    spec = preprocess or getattr(model, "preprocess", None) or model_entry(name).preprocess
    if spec is None:
        raise ValueError(f"no preprocessing spec known for {name!r}")
    tensors = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        tensors[k] = (v.float() if v.is_floating_point() else v).contiguous().numpy()
    meta = {"model": name, "config": config, "preprocess": spec.to_dict(), "method": method, "card": dict(card or {})}
    return write_weights(path, tensors, meta)


def convert_hint(path: str | Path) -> str:
    """The command that converts an old checkpoint the user trusts into the data-only format."""
    p = Path(path)
    return f"agekit convert-checkpoint {p} {p.with_suffix(SUFFIX)} --trust-pickle"


def _pickle_globals(path: Path, limit: int = 3) -> list[str] | None:
    """The first Python objects a (non-zip) pickle file would import, read with ``pickletools`` (which runs
    nothing); None when the file is not a pickle."""

    found: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if isinstance(arg, str):
                    strings = (strings + [arg])[-2:]
                if op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) == 2:
                    found.append(".".join(strings))
                if len(found) >= limit:
                    break
    except Exception:
        return found or None
    return found


def _trust_warning(path: Path) -> None:
    print(f"agekit: warning: {path}: loaded as a full pickle (--trust-pickle): any code in this file has run",
          file=sys.stderr)


def _refuse(path: Path, what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(
        f"{path}: refused: it is a pickle that needs {what}, which agekit does not run (nothing in the file was "
        f"executed); if you made or trust this file, convert it once: {convert_hint(path)}")


def _torch_load(path: Path, map_location: Any, trust: bool) -> Any:

    if trust:
        _trust_warning(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=False)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals(SAFE_GLOBALS):
            warnings.simplefilter("ignore")  # torch's notes on pickle protocols: the refusal below says it all
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        m = re.search(r"GLOBAL ([\w.]+)", str(e))
        if m:
            raise _refuse(path, f"the Python object {m.group(1)}") from None
        names = _pickle_globals(path)
        if names:
            raise _refuse(path, "the Python object " + ", ".join(names)) from None
        if names is not None:
            raise _refuse(path, "pickle instructions beyond tensors and plain data") from None
        raise CheckpointError(f"{path}: not a checkpoint agekit can read (neither safetensors, a torch file nor a "
                              "pickle)") from None
    except Exception as e:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"{path}: not a checkpoint agekit can read ({one_line(e)})") from None


def _from_lightning(path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    hp = ckpt.get("hyper_parameters")
    if not isinstance(hp, dict):
        raise CheckpointError(f"{path}: a Lightning checkpoint without agekit hyper-parameters")
    prefix = hp.get("state_dict_prefix", "model.")
    sd = ckpt.get("state_dict")
    if not isinstance(prefix, str) or not isinstance(sd, dict):
        raise CheckpointError(f"{path}: a Lightning checkpoint without a state dict")
    state = {k[len(prefix) :]: v for k, v in sd.items() if isinstance(k, str) and k.startswith(prefix)}
    return {
        "format": FORMAT,
        "model": hp.get("model"),
        "config": hp.get("config", {}),
        "preprocess": hp.get("preprocess"),
        "method": hp.get("method"),
        "state_dict": state,
        "card": hp.get("card", {}),
    }


def _check_fields(path: Path, ckpt: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(ckpt.get("model"), str):
        raise CheckpointError(f"{path}: no registry name of the network ('model')")
    for k in ("config", "card"):
        ckpt[k] = ckpt.get(k) if ckpt.get(k) is not None else {}
        if not isinstance(ckpt[k], dict) or not all(isinstance(x, str) for x in ckpt[k]):
            raise CheckpointError(f"{path}: {k!r} must be a dict with string keys")
    if ckpt.get("preprocess") is not None and not isinstance(ckpt["preprocess"], dict):
        raise CheckpointError(f"{path}: 'preprocess' must be a dict")
    if ckpt.get("method") is not None and not isinstance(ckpt["method"], str):
        raise CheckpointError(f"{path}: 'method' must be a string")
    sd = ckpt.get("state_dict")
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: no state dict")
    for k, v in sd.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{path}: state dict entry {k!r} is a {type(v).__name__}, not a tensor")
    return ckpt


def read_checkpoint(path: str | Path, map_location: Any = "cpu", *, trust_pickle: bool | None = None) -> dict[str, Any]:
    """The checkpoint's fields as a dict (``model``, ``config``, ``preprocess``, ``method``, ``card``, ``state_dict``
    of torch tensors), from an agekit ``.safetensors`` file, an old agekit ``.pt`` or an agekit Lightning ``.ckpt``.

    Types are checked; the state dict is not yet compared with the network (:func:`load_checkpoint` does).
    ``trust_pickle`` (default: :func:`set_trust_pickle`'s setting) loads old pickles in full.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    if is_safetensors(path):
        meta, arrays = read_weights(path)
        return {**meta, "state_dict": {k: torch.from_numpy(a) for k, a in arrays.items()}}
    trust = _TRUST_PICKLE if trust_pickle is None else bool(trust_pickle)
    ckpt = _torch_load(path, map_location, trust)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: not an agekit checkpoint (it holds a {type(ckpt).__name__}, not a dict)")
    if ckpt.get("format") != FORMAT:
        if isinstance(ckpt.get("hyper_parameters"), dict) and "model" in ckpt["hyper_parameters"]:
            ckpt = _from_lightning(path, ckpt)
        else:
            raise CheckpointError(f"{path}: not an agekit checkpoint (no format {FORMAT!r}, no agekit hyper-parameters)")
    return _check_fields(path, dict(ckpt))


def build_network(path: str | Path, ckpt: dict[str, Any]) -> nn.Module:
    """The network a checkpoint's fields describe, with its validated weights, in eval mode.

    The file's tensors are first compared with a shell of the network on the meta device (no
    memory), so a config asking for a huge network costs nothing unless the file holds it.
    """
    try:
        with torch.device("meta"):
            shell = create_model(ckpt["model"], **ckpt.get("config", {}))
    except Exception:  # a constructor that needs real tensors: checked after the real build below
        shell = None
    if shell is not None:
        check_state(path, ckpt["state_dict"], shell.state_dict())
    try:
        model = create_model(ckpt["model"], **ckpt.get("config", {}))
    except Exception as e:  # an unknown name or a config the network does not take
        raise CheckpointError(f"{path}: cannot build network {ckpt['model']!r} from its config ({one_line(e)})") from None
    check_state(path, ckpt["state_dict"], model.state_dict())
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", *, trust_pickle: bool | None = None
) -> LoadedModel:
    """Rebuild the network of an agekit checkpoint (``.safetensors``, old ``.pt`` or Lightning ``.ckpt``), in eval mode.

    Old pickles load data-only unless ``trust_pickle`` (see the module docstring). Raises
    :class:`CheckpointError` (a ``ValueError`` with one line naming the file) for anything unusable.
    """
    path = Path(path)
    ckpt = read_checkpoint(path, map_location, trust_pickle=trust_pickle)
    model = build_network(path, ckpt)
    spec_d = ckpt.get("preprocess")
    try:
        spec = PreprocessSpec.from_dict(spec_d) if spec_d else model_entry(ckpt["model"]).preprocess
    except Exception as e:
        raise CheckpointError(f"{path}: bad preprocessing spec ({one_line(e)})") from None
    model.preprocess = spec  # type: ignore[attr-defined]
    return LoadedModel(model, ckpt["model"], ckpt.get("config", {}), spec, ckpt.get("method"), ckpt.get("card", {}))


def check_resume_file(path: str | Path) -> bool:
    """Check that a Lightning ``last.ckpt`` can be resumed from; returns the ``weights_only`` to give Lightning.

    Data-only (True) unless pickles are trusted; refuses with one line when it would need more.
    """
    path = Path(path)
    if _TRUST_PICKLE:  # Lightning loads it in full
        _trust_warning(path)
        return False
    read_checkpoint(path)
    return True
