"""Training recipes: one YAML file per experiment, read into a typed, validated :class:`Recipe`.

A recipe names the model (registry name + config), the method (loss and decoder), the data (prepared
cache, protocol, splits, batch size), the augmentation, the optimiser and schedule of the paper, and the
trainer settings. ``extends: other_recipe`` starts from another recipe; ``--set a.b=c`` overrides any key
(the value is read as YAML). Chains are described in the recipe: ``stages`` (a list of overrides trained one
after the other, each initialised from the previous one: SSR-Net's IMDB -> WIKI -> MORPH) and
``generations`` (LRN, Alg. 1: generation t is taught by generation t - 1).

The schema below is the one place where a setting and its default are stated. An unknown key (in a file or
an override) or an invalid value is refused with one line naming the key, e.g.
``recipe 'ssrnet_utkface': unknown key trainer.max_epoch (did you mean trainer.max_epochs?)``.
"""
from __future__ import annotations

import copy
import difflib
import re
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from agekit.methods import list_methods
from agekit.models.registry import list_models

__all__ = [
    "Augment", "Data", "Method", "Model", "Optimizer", "Preprocess", "Recipe", "RecipeError", "Scheduler", "Source",
    "Trainer",
    "apply_overrides", "list_recipes", "load_recipe", "parse_override", "parse_recipe", "recipe_dir",
]


class RecipeError(ValueError):
    """A recipe that cannot be used; the message is one line naming the recipe and the key."""


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``choices``, else an empty string."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Interval = Literal["epoch", "step"]
SPLIT = re.compile(r"^[A-Za-z0-9_.\-]+(\s*\+\s*[A-Za-z0-9_.\-]+)*$")


def _path_to_str(v: Any) -> Any:
    return str(v) if isinstance(v, Path) else v


def _split_name(v: str) -> str:
    if not SPLIT.match(v):
        raise ValueError(f"{v!r} is not a split name (letters, digits, _ . -; several joined by +)")
    return v


PathStr = Annotated[str, BeforeValidator(_path_to_str)]  # a path given as a Path is kept as its text
SplitName = Annotated[str, AfterValidator(_split_name)]  # "train", or several joined by "+"
LABELS = ("age", "age_std", "gender", "age_group", "race")


class Model(_Section):
    """The network: a registry name and its constructor options."""

    name: str
    config: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_model(cls, v: str) -> str:
        known = list_models()
        if v not in known:
            raise ValueError(f"unknown model {v!r}{did_you_mean(v, known)}; `agekit models` lists them")
        return v


class Method(_Section):
    """The loss and decoder (``None``: the model's default method) and their options."""

    name: str | None = None
    config: dict[str, Any] = {}

    @field_validator("name")
    @classmethod
    def _known_method(cls, v: str | None) -> str | None:
        known = list_methods()
        if v is not None and v not in known:
            raise ValueError(f"unknown method {v!r}{did_you_mean(v, known)}; one of {', '.join(known)}")
        return v


class Preprocess(_Section):
    """Overrides of the model's :class:`~agekit.preprocessing.PreprocessSpec` (unset: the model's own value)."""

    size: PositiveInt | None = None
    margin: NonNegativeFloat | None = None
    crops: str | None = None
    ratios: list[PositiveFloat] | None = None
    resize: PositiveInt | None = None
    color: Literal["RGB", "BGR"] | None = None
    scale: PositiveFloat | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = None
    per_image_standardize: bool | None = None
    align: bool | None = None
    border: Literal["constant", "replicate"] | None = None

    def overrides(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Source(_Section):
    """One prepared cache of a multi-dataset recipe (``data.sources``; :mod:`agekit.training.sampling`)."""

    cache: PathStr
    protocol: str | None = None  # None: the cache's only protocol
    weight: PositiveFloat = 1.0  # share of the training draws: weight / sum of the sources' weights
    train_split: SplitName | None = None  # None: the data section's split names
    val_split: SplitName | None = None
    test_split: SplitName | None = None
    # precomputed teacher outputs over this cache's rows (.npz, `agekit teacher-outputs`); given for every source
    # (and no top-level teacher), they are joined in the order of the training draws' rows
    teacher: PathStr | None = None


class Data(_Section):
    """The prepared cache, its protocol and splits, and the batches."""

    cache: PathStr | None = None
    sources: dict[str, Source] = {}  # several caches trained together, each drawn with its weight (instead of cache)
    protocol: PathStr | None = None
    train_split: SplitName = "train"  # "train+val": both splits (a final model)
    val_split: SplitName | None = "val"
    test_split: SplitName | None = "test"
    batch_size: PositiveInt = 50
    eval_batch_size: PositiveInt = 256
    drop_last: bool = False
    balance: NonNegativeFloat = 0.0  # > 0: draw epochs towards rare ages (see AgeDataModule)
    require: list[Literal["age", "age_std", "gender", "age_group", "race"]] | None = None  # None: the method's labels
    age_groups: Literal["adience"] | None = None  # derive the Adience group from the age where a row has none


class Augment(_Section):
    """An augmentation preset of :mod:`agekit.training.augment` and overrides of its values."""

    name: Literal["none", "flip", "ssr", "hsr", "c3ae", "lrn", "lmtcnn", "photo"] = "none"
    flip: Annotated[float, Field(ge=0, le=1)] | None = None
    rotation: NonNegativeFloat | None = None
    shear: NonNegativeFloat | None = None
    shear_unit: Literal["rad", "deg"] | None = None
    shift: NonNegativeFloat | None = None
    zoom: tuple[PositiveFloat, PositiveFloat] | None = None
    zoom_independent: bool | None = None
    p: Annotated[float, Field(ge=0, le=1)] | None = None
    padding_mode: Literal["zeros", "border", "reflection"] | None = None
    erase_p: Annotated[float, Field(ge=0, le=1)] | None = None
    erase_area: tuple[PositiveFloat, PositiveFloat] | None = None
    erase_ratio: tuple[PositiveFloat, PositiveFloat] | None = None
    erase_value: float | None = None
    resized_crop_scale: tuple[PositiveFloat, PositiveFloat] | None = None
    resized_crop_ratio: tuple[PositiveFloat, PositiveFloat] | None = None
    random_crop: bool | None = None
    brightness: NonNegativeFloat | None = None
    contrast: tuple[NonNegativeFloat, NonNegativeFloat] | None = None
    # what real photos do (agekit.training.photo_augment; off unless set or preset "photo"): a probability per face
    light_p: Annotated[float, Field(ge=0, le=1)] | None = None
    light_gamma: tuple[PositiveFloat, PositiveFloat] | None = None
    light_gradient: Annotated[float, Field(ge=0, lt=1)] | None = None
    lowres_p: Annotated[float, Field(ge=0, le=1)] | None = None
    lowres_scale: tuple[PositiveFloat, Annotated[float, Field(gt=0, le=1)]] | None = None
    blur_p: Annotated[float, Field(ge=0, le=1)] | None = None
    blur_sigma: tuple[PositiveFloat, PositiveFloat] | None = None
    gray_p: Annotated[float, Field(ge=0, le=1)] | None = None
    sepia_p: Annotated[float, Field(ge=0, le=1)] | None = None
    jpeg_p: Annotated[float, Field(ge=0, le=1)] | None = None
    jpeg_quality: tuple[Annotated[float, Field(ge=1, le=100)], Annotated[float, Field(ge=1, le=100)]] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        return {"name": v or "none"} if v is None or isinstance(v, str) else v

    def options(self) -> dict[str, Any]:
        """The preset name and the values set here (what :func:`~agekit.training.augment.build_augment` takes)."""
        return self.model_dump(exclude_none=True)


class Adam(_Section):
    """Adam (SSR-Net, C3AE)."""

    name: Literal["adam"] = "adam"
    lr: PositiveFloat = 1e-3
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    weight_decay: NonNegativeFloat = 0.0


class AdamW(Adam):
    """AdamW (agekit's own recipes: decoupled weight decay)."""

    name: Literal["adamw"] = "adamw"  # type: ignore[assignment]
    weight_decay: NonNegativeFloat = 0.01


class SGD(_Section):
    """SGD with momentum (HSR, LRN, LMTCNN)."""

    name: Literal["sgd"] = "sgd"
    lr: PositiveFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    weight_decay: NonNegativeFloat = 0.0
    nesterov: bool = False


class RMSprop(_Section):
    name: Literal["rmsprop"] = "rmsprop"
    lr: PositiveFloat = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    weight_decay: NonNegativeFloat = 0.0


Optimizer = Annotated[Adam | AdamW | SGD | RMSprop, Field(discriminator="name")]


class NoSchedule(_Section):
    name: Literal["none"] = "none"


class MultiStep(_Section):
    """x ``gamma`` at each listed epoch (or step) (SSR-Net: x0.1 at 30 and 60 of 90)."""

    name: Literal["multistep"] = "multistep"
    milestones: list[Annotated[int, Field(ge=1)]]
    gamma: PositiveFloat = 0.1
    interval: Interval = "epoch"


class Step(_Section):
    """x ``gamma`` every ``step_size`` epochs or steps (LRN: /10 every 40 epochs; LMTCNN: every 10k steps)."""

    name: Literal["step"] = "step"
    step_size: PositiveInt
    gamma: PositiveFloat = 0.1
    interval: Interval = "epoch"


class Plateau(_Section):
    """ReduceLROnPlateau on a validation metric (HSR: factor 0.1, patience 10, threshold 1e-4; C3AE alike)."""

    name: Literal["plateau"] = "plateau"
    mode: Literal["min", "max"] = "min"
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1
    patience: Annotated[int, Field(ge=0)] = 10
    threshold: NonNegativeFloat = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    min_lr: NonNegativeFloat = 0.0
    monitor: str | None = None  # None: trainer.monitor


class Cosine(_Section):
    """agekit's own recipes (not the papers): linear warm-up for ``warmup`` epochs, then cosine to ``min_factor``."""

    name: Literal["cosine"] = "cosine"
    epochs: PositiveInt | None = None  # None: trainer.max_epochs
    warmup: Annotated[int, Field(ge=0)] = 0
    min_factor: Annotated[float, Field(ge=0, le=1)] = 0.0
    interval: Interval = "epoch"


Scheduler = Annotated[NoSchedule | MultiStep | Step | Plateau | Cosine, Field(discriminator="name")]
PRECISIONS = ("32-true", "32", "64-true", "64", "16-mixed", "16", "bf16-mixed", "bf16", "16-true", "bf16-true")


class Trainer(_Section):
    """Lightning ``Trainer`` settings and agekit's own (EMA, checkpoints, compile, channels-last)."""

    max_epochs: PositiveInt | None = 160  # None: only max_steps ends the run
    max_steps: Annotated[int, Field(ge=-1)] = -1  # -1: no limit
    max_time: Annotated[str, Field(pattern=r"^\d+:\d{1,2}:\d{1,2}:\d{1,2}$")] | None = None  # "DD:HH:MM:SS"
    accelerator: Literal["auto", "cpu", "gpu", "cuda", "mps", "tpu", "hpu"] = "auto"
    devices: Annotated[int, Field(ge=-1)] | list[Annotated[int, Field(ge=0)]] | str = 1  # Lightning's forms
    strategy: str = "auto"
    num_nodes: PositiveInt = 1  # machines of a multi-node DDP run (torchrun --nnodes, SLURM --nodes)
    # "auto": the faster of float32 and bf16 autocast (and of the layouts), timed at the start of the run
    # (agekit.training.probe)
    precision: Literal[PRECISIONS + ("auto",)] = "32-true"  # type: ignore[valid-type]
    channels_last: bool | Literal["auto"] = False
    # true: Inductor; "auto": Inductor where the probe at the start measures it faster (agekit.training.probe); another
    # string: that torch.compile backend (e.g. "eager")
    compile: bool | str = False
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None = None  # validate and ship the EMA of the weights
    ema_warmup: bool = True
    seed: int | None = 1
    deterministic: bool = False
    gradient_clip_val: PositiveFloat | None = None
    gradient_clip_algorithm: Literal["norm", "value"] = "norm"
    limit_train_batches: PositiveInt | Annotated[float, Field(gt=0, le=1)] | None = None
    limit_val_batches: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0, le=1)] | None = None
    log_every_n_steps: PositiveInt = 20
    check_val_every_n_epoch: PositiveInt = 1
    progress_bar: bool = True
    monitor: str = "val/mae"
    checkpoint_every_n_steps: Annotated[int, Field(ge=0)] = 500  # also at every epoch's end; 0: only there

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _ends(self) -> Trainer:
        if self.max_epochs is None and self.max_steps < 1:
            raise ValueError("max_epochs is null and max_steps is -1: the run would never end")
        return self


class Recipe(_Section):
    """A complete training recipe (every section filled with its defaults)."""

    name: str | None = None
    paper: str | None = None
    description: str = ""
    model: Model
    preprocess: Preprocess = Preprocess()
    method: Method = Method()
    data: Data = Data()
    augment: Augment = Augment()
    optimizer: Optimizer = SGD()
    scheduler: Scheduler = NoSchedule()
    trainer: Trainer = Trainer()
    init_from: str | None = None  # initialise from this checkpoint (weights matching by name and shape)
    teacher: str | list[str] | None = None  # a checkpoint / .npz, or several (an ensemble)
    generations: PositiveInt = 1  # LRN: generations, each taught by the one before
    stages: list[dict[str, Any]] = []  # overrides trained one after the other (each: a name and recipe keys)

    @field_validator("init_from", "teacher", mode="before")
    @classmethod
    def _paths(cls, v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        return [str(x) for x in v] if isinstance(v, (list, tuple)) else v

    @field_validator("stages")
    @classmethod
    def _stage_keys(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        known = [k for k in cls.model_fields if k != "stages"] + ["name"]
        for i, st in enumerate(v):
            for k in st:
                if k not in known:
                    hint = did_you_mean(k, known).replace("mean ", f"mean stages.{i}.")
                    raise ValueError(f"unknown key stages.{i}.{k}{hint}")
        return v

    def to_dict(self) -> dict[str, Any]:
        """The recipe as plain YAML/JSON data (what ``recipe.yaml`` and ``--print-config`` show).

        ``preprocess`` and ``augment`` list only the values they set (the others: the model's, the preset's).
        """
        d = self.model_dump(mode="json")
        for k in ("preprocess", "augment"):
            d[k] = {n: v for n, v in d[k].items() if v is not None}
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def updated(self, **values: Any) -> Recipe:
        """A validated copy with these top-level values replaced."""
        return _validate({**self.to_dict(), **values}, repr(values.get("name", self.name)))

    def with_overrides(self, overrides: list[str] | None) -> Recipe:
        """A validated copy with ``--set`` items applied."""
        return parse_recipe(self.to_dict(), overrides) if overrides else self.model_copy(deep=True)

    def stage(self, i: int) -> tuple[str, Recipe]:
        """The name and the complete recipe of chain stage ``i`` (this recipe with the stage's overrides)."""
        st = dict(self.stages[i])
        name = str(st.pop("name", None) or f"stage{i + 1}")
        base = {k: v for k, v in self.to_dict().items() if k != "stages"}
        return name, _validate(_extend(base, st), repr(self.name), prefix=f"stages.{i}.")


# ------------------------------------------------------------------------------------------------ reading
class _Loader(yaml.SafeLoader):
    """YAML with the 1.2 rule for floats: ``1e-3`` is a number (YAML 1.1 reads it as a string)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][-+]?\d+)?$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."),
)


def _yaml(text: str) -> Any:
    value = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass: plain data only)
    if isinstance(value, float) and value.is_integer() and re.fullmatch(r"\s*[-+]?\d+\s*", text):
        return int(value)  # "3" stays an int under the float rule above
    return value


def recipe_dir() -> Path:
    """The folder of the recipes shipped with agekit (``src/agekit/recipes``), one sub-folder per group."""
    return Path(str(resources.files("agekit") / "recipes"))


RECIPE_GROUPS = ("papers", "agekit")  # the five papers' experiments; agekit's own models and training schemes


def shipped_recipes() -> dict[str, Path]:
    """Every shipped recipe's name and file (``recipes/papers/*.yaml``, ``recipes/agekit/*.yaml``), sorted by name."""
    found: dict[str, Path] = {}
    for group in RECIPE_GROUPS:
        for path in sorted((recipe_dir() / group).glob("*.yaml")):
            if path.stem in found:  # names are global: ``--recipe NAME`` and ``extends: NAME`` must be unambiguous
                raise RecipeError(f"shipped recipe {path.stem!r} is in two groups: {found[path.stem]} and {path}")
            found[path.stem] = path
    return dict(sorted(found.items()))


def list_recipes() -> list[str]:
    """Names of the shipped recipes, sorted."""
    return list(shipped_recipes())


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``over`` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


TAGGED = ("method", "optimizer", "scheduler")  # sections whose options belong to the kind that ``name`` picks


def _rekind(section: Any, name: Any) -> Any:
    """A base ``section`` under another kind ``name``: the options that kind takes (a method's: none)."""
    if not isinstance(section, dict) or name is None or name == section.get("name"):
        return section
    for union in (Optimizer, Scheduler):
        models = {_tag(m): m for m in _models(union)}
        if section.get("name") in models and name in models:
            return {k: v for k, v in section.items() if k in models[name].model_fields}
    return {}  # a method's options (or an unknown kind's) do not carry over


def _extend(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged over ``base``; a section of :data:`TAGGED` naming another kind keeps only what that kind takes."""
    base = dict(base)
    for k in TAGGED:
        if isinstance(over.get(k), dict) and "name" in over[k] and isinstance(base.get(k), dict):
            base[k] = _rekind(base[k], over[k]["name"])
    return _merge(base, over)


def _find(name_or_path: str | Path) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    shipped = shipped_recipes().get(p.stem if p.suffix else str(name_or_path))
    if shipped is not None:
        return shipped
    raise FileNotFoundError(f"no recipe {str(name_or_path)!r}: not a YAML file and not a shipped recipe"
                            f"{did_you_mean(p.stem, list_recipes())}; the shipped recipes are in {recipe_dir()}")


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise RecipeError(f"recipe {path} extends itself through {[str(s) for s in seen]}")
    try:
        d = yaml.load(path.read_text(), Loader=_Loader) or {}  # noqa: S506 (SafeLoader subclass)
    except yaml.YAMLError as e:
        raise RecipeError(f"recipe {path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(d, dict):
        raise RecipeError(f"recipe {path}: the top level must be a mapping, got {type(d).__name__}")
    parent = d.pop("extends", None)
    own_name = d.get("name") or path.stem  # a recipe is named by its own file, never by the one it extends
    if parent:
        sibling = path.parent / f"{parent}.yaml"
        base = _read(sibling if sibling.is_file() else _find(parent), seen + (path,))
        d = _extend(base, d)
    d["name"] = own_name
    return d


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=c"`` -> (["a", "b"], the YAML value of c); a malformed item raises :class:`RecipeError`."""
    if "=" not in item:
        raise RecipeError(f"--set expects key=value, got {item!r}")
    key, value = item.split("=", 1)
    keys = [k for k in key.strip().split(".") if k]
    if not keys:
        raise RecipeError(f"--set expects key=value, got {item!r}")
    try:
        return keys, (_yaml(value) if value.strip() else None)
    except yaml.YAMLError as e:
        raise RecipeError(f"--set {item!r}: not a YAML value: {' '.join(str(e).split())}") from None


def apply_overrides(recipe: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``--set a.b=c`` items to a copy of the plain ``recipe`` (missing mappings are created)."""
    out = copy.deepcopy(recipe)
    for item in overrides or []:
        keys, value = parse_override(item)
        d: Any = out
        for i, k in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(d, list):  # stages.0.data.cache=...
                if not k.lstrip("-").isdigit() or not -len(d) <= int(k) < len(d):
                    raise RecipeError(f"--set {item!r}: {k!r} is not an index of a list of {len(d)}")
                if last:
                    d[int(k)] = value
                else:
                    d = d[int(k)]
                continue
            if not isinstance(d, dict):
                raise RecipeError(f"--set {item!r}: {'.'.join(keys[:i])} is not a mapping")
            if last:
                d[k] = value
            else:
                if not isinstance(d.get(k), (dict, list)):
                    d[k] = {}
                d = d[k]
    return out


# ------------------------------------------------------------------------------------------------ errors
def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation may hold (through Optional, unions, lists and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _models(a)]


def _tag(model: type[BaseModel]) -> str | None:
    f = model.model_fields.get("name")
    args = typing.get_args(f.annotation) if f is not None else ()
    return str(args[0]) if len(args) == 1 else None


def _walk(loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """The dotted key of a pydantic error location (union tags left out) and the model holding its last part."""
    cls: type[BaseModel] | None = Recipe
    shown: list[str] = []
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        shown.append(str(part))
        if not parts or isinstance(part, int):
            continue
        f = cls.model_fields.get(str(part)) if cls is not None else None
        sub = _models(f.annotation) if f is not None else []
        if len(sub) > 1:  # a tagged union: the next part of the location is the tag
            tags = {_tag(m): m for m in sub}
            cls = tags[str(parts.pop(0))] if str(parts[0]) in tags else None
        else:
            cls = sub[0] if sub else None
    return shown, cls


def _one_line(e: dict[str, Any], prefix: str) -> str:
    shown, holder = _walk(tuple(e["loc"]))
    key = prefix + ".".join(shown)
    kind = e["type"]
    if kind == "extra_forbidden":
        known = [k for k in holder.model_fields] if holder is not None else []
        hint = did_you_mean(shown[-1], known)
        if hint:
            stem = key.rsplit(".", 1)[0] + "." if "." in key else ""
            hint = hint.replace("mean ", f"mean {stem}", 1)
        elif known:
            hint = f" (known: {', '.join(known)})"
        return f"unknown key {key}{hint}"
    if kind == "union_tag_invalid":
        tags = [t.strip(" '") for t in str(e["ctx"]["expected_tags"]).split(",")]
        tag = e["ctx"]["tag"]
        return f"{key}.name: unknown {tag!r}{did_you_mean(tag, tags)}; one of {', '.join(tags)}"
    if kind == "union_tag_not_found":
        return f"{key}: needs a name"
    if kind == "missing":
        return f"{key}: missing"
    msg = str(e["msg"]).removeprefix("Value error, ")
    value = e.get("input")
    if msg.startswith("unknown key "):
        return msg
    if kind == "literal_error" and isinstance(value, str):
        choices = re.findall(r"'([^']*)'", str((e.get("ctx") or {}).get("expected", "")))
        return f"{key}: unknown {value!r}{did_you_mean(value, choices)}; one of {', '.join(choices)}"
    got = "" if isinstance(value, (dict, list)) or kind == "value_error" else f" (got {value!r})"
    return f"{key}: {msg}{got}"


def _validate(d: dict[str, Any], what: str, prefix: str = "") -> Recipe:
    try:
        return Recipe.model_validate(d)
    except ValidationError as err:
        lines = list(dict.fromkeys(_one_line(e, prefix) for e in err.errors()))
        raise RecipeError(f"recipe {what}: {'; '.join(lines)}") from None


# ------------------------------------------------------------------------------------------------ loading
def parse_recipe(name_or_path: str | Path | dict[str, Any] | Recipe, overrides: list[str] | None = None) -> Recipe:
    """A complete, validated recipe: the schema's defaults <- the YAML (and what it extends) <- ``overrides``.

    Every stage of a chain is checked too (the recipe with the stage's overrides).
    """
    if isinstance(name_or_path, Recipe):
        d = name_or_path.to_dict()
    elif isinstance(name_or_path, dict):
        d = copy.deepcopy(name_or_path)
    else:
        d = _read(_find(name_or_path))
    for k in TAGGED:  # --set optimizer.name=adamw: the section keeps only what the new kind takes
        names = [v for keys, v in map(parse_override, overrides or []) if keys == [k, "name"]]
        if names and isinstance(d.get(k), dict):
            d[k] = _rekind(d[k], names[-1])
    d = apply_overrides(d, overrides)
    what = repr(d.get("name")) if isinstance(d, dict) and d.get("name") else "(unnamed)"
    if not isinstance((d.get("model") or {}), dict) or not (d.get("model") or {}).get("name"):
        raise RecipeError(f"recipe {what} names no model (model.name)")
    recipe = _validate(d, what)
    for i in range(len(recipe.stages)):
        recipe.stage(i)
    return recipe


def load_recipe(name_or_path: str | Path | dict[str, Any] | Recipe, overrides: list[str] | None = None) -> dict[str, Any]:
    """:func:`parse_recipe` as plain data (every key present, defaults filled in)."""
    return parse_recipe(name_or_path, overrides).to_dict()


OPTIMIZER: TypeAdapter[Any] = TypeAdapter(Optimizer)
SCHEDULER: TypeAdapter[Any] = TypeAdapter(Scheduler)
