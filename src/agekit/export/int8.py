"""int8 ONNX graphs that pay: calibrated on real face crops, with only the layers that gain quantised.

ONNX Runtime's int8 kernels (``QLinearConv`` and friends, VNNI where the CPU has it) beat float32 on dense
convolutions and lose on some others: depthwise convolutions, a first convolution over 3 input channels,
pools whose float32 kernels are already memory-bound. :func:`select_layers` measures it instead of guessing:
it quantises the graph with an :class:`Int8Recipe`, then drops from the quantised set, one at a time, the layer
whose float32 execution makes the graph fastest, as long as that pays (interleaved timing rounds, median faces/s
on one thread). :func:`age_drift` measures what it costs on real faces (the MAE difference against the float32
graph on a labelled split, flip-averaged like the predictor). The calibration faces are the train rows of a
prepared cache (:func:`cache_faces`), never the split the drift is reported on.

``experiments/int8_drift.py`` runs it on the shipped weights, writes the results and, with ``--ship``, the
``<name>.int8.onnx`` graphs (and their cards) where int8 wins; ``agekit predict --precision int8`` runs them.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from agekit.data.cache import PreparedCache
from agekit.ortsession import ort_session

INT8_SUFFIX = ".int8.onnx"
WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")  # the layers that carry the MACs (and int8 weights)
POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool")
FORMATS = ("qdq", "qoperator")
TYPES = ("u8", "s8")
CALIBRATIONS = ("minmax", "percentile", "entropy")


@dataclass(frozen=True)
class Int8Recipe:
    """How a float32 graph is quantised (``onnxruntime.quantization.quantize_static``'s settings).

    ``quant_format``: "qdq" (Quantize/DequantizeLinear pairs that ONNX Runtime fuses into int8 kernels) or
    "qoperator" (QLinearConv etc. written out); ``per_channel``: one weight scale per output channel;
    ``reduce_range``: 7-bit weights (for CPUs without VNNI); ``activations``/``weights``: "u8" or "s8" (U8S8 is
    the VNNI path); ``op_types``: operator types quantised; ``calibration``: "minmax", "percentile" (99.999 %)
    or "entropy"; ``exclude``: node names kept in float32; ``exclude_depthwise``: keep every grouped convolution
    in float32 (ONNX Runtime's int8 depthwise kernels lose to its float32 ones).
    """

    quant_format: str = "qdq"
    per_channel: bool = True
    reduce_range: bool = False
    activations: str = "u8"
    weights: str = "s8"
    op_types: tuple[str, ...] = ("Conv", "Gemm", "MatMul", "Relu", "Clip", "MaxPool")
    calibration: str = "percentile"
    exclude: tuple[str, ...] = ()
    exclude_depthwise: bool = True

    def __post_init__(self) -> None:
        for what, value, allowed in (("quant_format", self.quant_format, FORMATS), ("activations", self.activations, TYPES),
                                     ("weights", self.weights, TYPES), ("calibration", self.calibration, CALIBRATIONS)):
            if value not in allowed:
                raise ValueError(f"int8 recipe: {what} must be one of {allowed}, not {value!r}")
        object.__setattr__(self, "op_types", tuple(self.op_types))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Int8Recipe:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"int8 recipe: unknown settings {sorted(unknown)}")
        return cls(**d)

    def describe(self) -> str:
        """One line: format, weights, activations, calibration."""
        return (f"{self.quant_format.upper()}, {'per-channel' if self.per_channel else 'per-tensor'} "
                f"{'int8' if self.weights == 's8' else 'uint8'} weights{' (7-bit range)' if self.reduce_range else ''}, "
                f"{'uint8' if self.activations == 'u8' else 'int8'} activations, {self.calibration} calibration, "
                f"ops {'/'.join(self.op_types)}")


@dataclass(frozen=True)
class Layer:
    """A node of a graph that quantisation can touch."""

    name: str
    op_type: str
    weight_shape: tuple[int, ...] = ()
    groups: int = 1

    @property
    def depthwise(self) -> bool:
        return self.op_type == "Conv" and self.groups > 1

    def label(self) -> str:
        return f"{self.name} ({self.op_type}{' depthwise' if self.depthwise else ''}{list(self.weight_shape) or ''})"


def graph_layers(path: str | Path) -> list[Layer]:
    """The weighted layers (Conv, Gemm, MatMul) and pools of an ONNX graph, in graph order."""
    import onnx

    g = onnx.load(str(path)).graph
    shapes = {i.name: tuple(int(d) for d in i.dims) for i in g.initializer}
    out = []
    for n in g.node:
        if n.op_type in WEIGHTED_OPS + POOL_OPS:
            groups = next((a.i for a in n.attribute if a.name == "group"), 1)
            w = shapes.get(n.input[1], ()) if len(n.input) > 1 else ()
            out.append(Layer(n.name, n.op_type, w, int(groups)))
    return out


def quantized_layers(int8_path: str | Path) -> list[str]:
    """Names of the nodes that run in int8 in a quantised graph: QDQ nodes fed by DequantizeLinear (their weights,
    or their input for pools) and QOperator ``QLinear*``/``*Integer`` nodes (their float32 names)."""
    import onnx

    g = onnx.load(str(int8_path)).graph
    dq_out = {o for n in g.node if n.op_type == "DequantizeLinear" for o in n.output}
    readers: dict[str, list[str]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.op_type)
    names = []
    for n in g.node:
        if n.op_type.startswith("QLinear") or n.op_type.endswith("Integer"):
            names.append(n.name.removesuffix("_quant"))
        elif n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in dq_out:  # int8 weights
            names.append(n.name)
        elif (n.op_type in POOL_OPS and n.input[0] in dq_out  # a pool between a DQ and Qs: fused to int8
              and set(readers.get(n.output[0], ["?"])) == {"QuantizeLinear"}):
            names.append(n.name)
    return names


def preprocess_graph(fp32_path: str | Path, out_path: str | Path) -> Path:
    """ONNX Runtime's quantisation pre-processing (shape inference, graph clean-up); node names are kept."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=False)
    return Path(out_path)


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over a float32 array, in batches of one size (the
    histogram calibrators stack them: the largest divisor of ``len(x)`` up to ``batch``)."""

    def __init__(self, name: str, x: np.ndarray, batch: int = 16):
        batch = max(b for b in range(1, min(batch, len(x)) + 1) if len(x) % b == 0)
        self.items = iter([{name: np.ascontiguousarray(x[i : i + batch], dtype=np.float32)}
                           for i in range(0, len(x), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def quantize(fp32_path: str | Path, out_path: str | Path, calib: np.ndarray, recipe: Int8Recipe | None = None,
             preprocessed: bool = False) -> list[str]:
    """Quantise ``fp32_path`` statically with ``recipe`` (default :class:`Int8Recipe`), calibrated on ``calib`` (the
    float32 network inputs of real faces); writes ``out_path`` and returns the names of the layers now in int8.

    ``preprocessed``: ``fp32_path`` went through :func:`preprocess_graph` already (node names are the same)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    recipe = recipe or Int8Recipe()
    if len(calib) == 0:
        raise ValueError("int8 calibration needs at least one face")
    CalibrationDataReader.register(_Reader)
    types = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[recipe.calibration]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(fp32_path) if preprocessed else preprocess_graph(fp32_path, Path(tmp) / "pre.onnx")
        layers = graph_layers(src)
        exclude = list(recipe.exclude) + ([la.name for la in layers if la.depthwise] if recipe.exclude_depthwise else [])
        # products with a 1-D constant or of two activations (a decoder's expectation over age bins) stay float32
        exclude += [la.name for la in layers if la.op_type in ("Gemm", "MatMul") and len(la.weight_shape) < 2]
        try:
            quantize_static(
                str(src), str(out_path), _Reader("input", calib),
                quant_format=QuantFormat.QDQ if recipe.quant_format == "qdq" else QuantFormat.QOperator,
                per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                activation_type=types[recipe.activations], weight_type=types[recipe.weights],
                op_types_to_quantize=list(recipe.op_types), nodes_to_exclude=exclude, calibrate_method=method,
            )
        except ValueError as e:  # numpy: a constant tensor has no histogram
            if "bins" not in str(e):
                raise
            raise ValueError(f"{recipe.calibration} calibration needs a histogram of every tensor and one of this "
                             "graph's is constant on the calibration faces; use calibration='minmax'") from e
    return quantized_layers(out_path)


def quantize_int8(fp32_path: str | Path, out_path: str | Path, calib: np.ndarray,
                  recipe: Int8Recipe | None = None) -> tuple[str, list[str]]:
    """Static int8 with ``recipe`` (default :class:`Int8Recipe`: QDQ, per-channel U8S8, depthwise convolutions in
    float32, percentile calibration) calibrated on ``calib``; dynamic (weights only) if static fails.

    Returns the mode used ("static"/"dynamic") and notes on what failed or which layers run in int8."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    notes: list[str] = []
    try:
        names = quantize(fp32_path, out_path, calib, recipe)
        notes.append(f"int8 layers: {len(names)} ({', '.join(names)})")
        return "static", notes
    except Exception as e:
        notes.append(f"static quantisation failed ({type(e).__name__}: {e}); used dynamic")
        with tempfile.TemporaryDirectory() as tmp:
            src = fp32_path
            try:
                src = preprocess_graph(fp32_path, Path(tmp) / "pre.onnx")
            except Exception as pe:  # pre-processing is an optimisation only
                notes.append(f"quant_pre_process skipped: {type(pe).__name__}: {pe}")
            quantize_dynamic(str(src), str(out_path), weight_type=QuantType.QInt8)
        return "dynamic", notes


# --- timing ---------------------------------------------------------------------------------------------------


def _batch_call(session: Any, x: np.ndarray, chunk: int) -> Callable[[], Any]:
    """One pass over ``x`` in slices of ``chunk`` faces (0: the batch whole), as the predictor's OnnxRunner runs it."""
    name = session.get_inputs()[0].name
    x = np.ascontiguousarray(x, dtype=np.float32)
    if chunk <= 0 or chunk >= len(x):
        return lambda: session.run(None, {name: x})
    parts = [x[i : i + chunk] for i in range(0, len(x), chunk)]
    return lambda: [session.run(None, {name: p}) for p in parts]


def compare_speed(paths: dict[str, str | Path], x: np.ndarray, threads: int = 1, chunk: int = 8, rounds: int = 7,
                  warmup: int = 2) -> dict[str, dict[str, float]]:
    """Faces/s of each graph on the batch ``x``: interleaved rounds (every graph once per round, so load that comes
    and goes hits all alike), median over rounds of the wall clock (``faces_s``) and of this process's CPU time
    (``cpu_faces_s``: on one thread, what another process's load does not change)."""
    calls = {k: _batch_call(ort_session(p, threads), x, chunk) for k, p in paths.items()}
    for f in calls.values():
        for _ in range(warmup):
            f()
    wall: dict[str, list[float]] = {k: [] for k in calls}
    cpu: dict[str, list[float]] = {k: [] for k in calls}
    for r in range(rounds):
        order = list(calls) if r % 2 == 0 else list(calls)[::-1]
        for k in order:
            c0, t0 = time.process_time(), time.perf_counter()
            calls[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    n = len(x)
    return {k: {"faces_s": n / float(np.median(wall[k])), "cpu_faces_s": n / max(float(np.median(cpu[k])), 1e-9)}
            for k in calls}


# --- measured layer selection ---------------------------------------------------------------------------------


@dataclass
class Selection:
    """What :func:`select_layers` chose and measured."""

    recipe: Int8Recipe
    int8_layers: list[str]
    float32_layers: list[str]  # weighted layers and pools left in float32 (depthwise ones included)
    faces_s: float  # the chosen int8 graph
    fp32_faces_s: float
    log: list[dict[str, Any]] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        return self.faces_s / self.fp32_faces_s


# the op types quantised with the weighted layers, tried in this order (the first of equally fast ones wins): none,
# the activations (a Relu after an int8 convolution fuses into it), then the pools, then the joins
COMPANIONS: tuple[tuple[str, ...], ...] = ((), ("Relu", "Clip"), ("Relu", "Clip", "MaxPool"),
                                           ("Relu", "Clip") + POOL_OPS, ("Relu", "Clip", "Add", "Concat") + POOL_OPS)


def rank(speed: dict[str, float], min_gain: float = 0.03) -> list[str]:
    """Keys from best to worst: repeatedly the first listed unless a later one is more than ``min_gain`` faster
    (the plainer of two equally fast choices, listed first, wins; timing noise never flips it)."""
    left, out = list(speed), []
    while left:
        best = left[0]
        for k in left:
            if speed[k] > speed[best] * (1.0 + min_gain):
                best = k
        out.append(best)
        left.remove(best)
    return out


def select_layers(fp32_path: str | Path, calib: np.ndarray, x: np.ndarray, recipe: Int8Recipe | None = None, *,
                  threads: int = 1, chunk: int = 8, rounds: int = 5, min_gain: float = 0.03,
                  companions: Sequence[Sequence[str]] = COMPANIONS,
                  accept: Callable[[Path], tuple[bool, str]] | None = None,
                  calibrations: Sequence[str] = ("percentile", "minmax"),
                  printer: Callable[[str], None] | None = None) -> Selection:
    """Quantise only the layers that gain, measured on ``x`` (a batch of faces) with ``threads`` threads.

    Op types: the recipe's weighted op types with each choice of ``companions`` (activations, pools, joins)
    quantised too; the fastest graph wins (a later choice must be ``min_gain`` faster). Layers: backward
    elimination over the int8 weighted layers - each is put back to float32 in turn, all candidates timed in
    interleaved rounds against the current graph, and the best kept while it is at least ``min_gain`` faster.
    When that drops a layer the op types are chosen again (a float32 first convolution can make int8 pools pay),
    then the layers once more. Depthwise convolutions stay float32 when the recipe says so. ``accept(path)``
    (e.g. the MAE drift on validation faces within a bound) gives (ok, a few words): a graph it refuses is built
    again with the other ``calibrations`` in turn, and if none passes it is never chosen - the next fastest op
    types are taken, a layer drop is not made."""
    recipe = recipe or Int8Recipe()
    say = printer or (lambda s: None)
    log: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pre = preprocess_graph(fp32_path, d / "pre.onnx")
        layers = graph_layers(pre)
        weighted_names = {la.name for la in layers if la.op_type in WEIGHTED_OPS}
        import onnx

        present = {n.op_type for n in onnx.load(str(pre)).graph.node}
        weighted = tuple(t for t in recipe.op_types if t in WEIGHTED_OPS)
        made = [0]

        def build(r: Int8Recipe) -> Path:
            made[0] += 1
            path = d / f"q{made[0]}.onnx"
            quantize(pre, path, calib, r, preprocessed=True)
            return path

        def acceptable(r: Int8Recipe, path: Path) -> tuple[Int8Recipe | None, Path | None, str]:
            if accept is None:
                return r, path, ""
            ok, why = accept(path)
            if ok:
                return r, path, ""
            whys = [f"{r.calibration}: {why}"]
            for c in calibrations:
                if c != r.calibration:
                    r2 = replace(r, calibration=c)
                    p2 = build(r2)
                    ok, why = accept(p2)
                    if ok:
                        return r2, p2, ""
                    whys.append(f"{c}: {why}")
            return None, None, "; ".join(whys)

        def choose_ops(r: Int8Recipe) -> tuple[Int8Recipe, Path, float]:
            cands: dict[str, Int8Recipe] = {}
            for extra in companions:
                c = replace(r, op_types=weighted + tuple(t for t in extra if t in present))
                cands.setdefault("+".join(c.op_types), c)
            paths = {k: build(c) for k, c in cands.items()}
            speed = compare_speed({"fp32": pre, **paths}, x, threads, chunk, rounds)
            fp32 = speed.pop("fp32")["faces_s"]
            ranked = rank({k: v["faces_s"] for k, v in speed.items()}, min_gain)
            refused = {}
            best, chosen = ranked[0], (cands[ranked[0]], paths[ranked[0]])
            for k in ranked:
                r2, p2, why = acceptable(cands[k], paths[k])
                if r2 is not None and p2 is not None:
                    best, chosen = k, (r2, p2)
                    break
                refused[k] = why
            log.append({"step": "op types", "float32_layers": list(r.exclude), "fp32_faces_s": round(fp32, 1),
                        "int8_faces_s": {k: round(v["faces_s"], 1) for k, v in speed.items()}, "chosen": best,
                        "refused": refused})
            for k, v in speed.items():
                say(f"  op types {k}: {v['faces_s']:.0f} faces/s ({v['faces_s'] / fp32:.2f}x float32 {fp32:.0f})"
                    + (" <-" if k == best else f" (refused: {refused[k]})" if k in refused else ""))
            return chosen[0], chosen[1], speed[best]["faces_s"]

        def drop_layers(r: Int8Recipe, path: Path) -> tuple[Int8Recipe, Path, bool]:
            dropped = False
            while True:
                inside = [n for n in quantized_layers(path) if n in weighted_names]
                if not inside:
                    return r, path, dropped
                trial = {n: build(replace(r, exclude=r.exclude + (n,))) for n in inside}
                speed = compare_speed({"current": path, **trial}, x, threads, chunk, rounds)
                base = speed.pop("current")["faces_s"]
                n_best = max(speed, key=lambda k: speed[k]["faces_s"])
                gain = speed[n_best]["faces_s"] / base - 1.0
                r2, p2, why = acceptable(replace(r, exclude=r.exclude + (n_best,)), trial[n_best]) \
                    if gain >= min_gain else (r, path, "")
                ok = r2 is not None
                log.append({"step": "float32 layer", "current_faces_s": round(base, 1),
                            "faces_s_with_layer_in_float32": {k: round(v["faces_s"], 1) for k, v in speed.items()},
                            "best": n_best, "gain": round(gain, 3), "dropped": gain >= min_gain and ok,
                            **({} if ok else {"refused": why})})
                say(f"  {n_best} in float32: {gain:+.1%} ("
                    + ("kept in float32" if gain >= min_gain and ok else f"refused: {why}" if not ok else "stays int8") + ")")
                if gain < min_gain or not ok:
                    return r, path, dropped
                assert r2 is not None and p2 is not None
                r, path, dropped = r2, p2, True

        recipe, path, _ = choose_ops(recipe)
        recipe, path, dropped = drop_layers(recipe, path)
        if dropped:
            again, again_path, _ = choose_ops(recipe)
            if again != recipe:
                recipe, path, _ = drop_layers(again, again_path)
        final = compare_speed({"fp32": pre, "int8": path}, x, threads, chunk, rounds)
        names = quantized_layers(path)
    return Selection(recipe, names, [la.name for la in layers if la.name not in names],
                     final["int8"]["faces_s"], final["fp32"]["faces_s"], log)


# --- drift on real faces --------------------------------------------------------------------------------------


def run_graph(path: str | Path, x: np.ndarray, flip: bool = False, batch: int = 256) -> dict[str, np.ndarray]:
    """Named float64 outputs of a graph on ``x`` (one thread); ``flip``: averaged with the mirror images' outputs
    (what the predictor does for a card with ``inference.flip``)."""
    s = ort_session(path, 1)
    names = [o.name for o in s.get_outputs()]

    def run(a: np.ndarray) -> dict[str, np.ndarray]:
        parts = [s.run(None, {"input": np.ascontiguousarray(a[i : i + batch], dtype=np.float32)})
                 for i in range(0, len(a), batch)]
        return {k: np.concatenate([p[j] for p in parts]).astype(np.float64) for j, k in enumerate(names)}

    out = run(x)
    if flip:
        mirror = run(x[..., ::-1])
        out = {k: 0.5 * (v + mirror[k]) for k, v in out.items()}
    return out


def age_drift(fp32_path: str | Path | dict[str, np.ndarray], int8_path: str | Path, x: np.ndarray, age: np.ndarray,
              gender: np.ndarray | None = None, flip: bool = False) -> dict[str, Any]:
    """What int8 costs on labelled faces: MAE of both graphs and their difference (``mae_drift``, int8 - fp32,
    years), mean/max |age difference|, and with ``gender`` labels (1 = female, -1 unknown) both accuracies and how
    many faces change side. A graph without an age output reports the gender figures only. ``fp32_path`` may be
    the float32 graph's outputs on ``x`` (:func:`run_graph`) already computed."""
    a = fp32_path if isinstance(fp32_path, dict) else run_graph(fp32_path, x, flip)
    b = run_graph(int8_path, x, flip)
    out: dict[str, Any] = {"n": int(len(x)), "flip": bool(flip)}
    age = np.asarray(age, dtype=np.float64)
    if "age" in a:
        pa, pb = a["age"].reshape(-1), b["age"].reshape(-1)
        ok = np.isfinite(age)
        out.update({"mae_fp32": float(np.abs(pa - age)[ok].mean()), "mae_int8": float(np.abs(pb - age)[ok].mean()),
                    "mean_abs_age_diff": float(np.abs(pa - pb).mean()), "max_abs_age_diff": float(np.abs(pa - pb).max())})
        out["mae_drift"] = out["mae_int8"] - out["mae_fp32"]
    if gender is not None and "gender_female" in a:
        g = np.asarray(gender)
        ok = g >= 0
        ga, gb = a["gender_female"].reshape(-1) > 0.5, b["gender_female"].reshape(-1) > 0.5
        out.update({"gender_accuracy_fp32": float((ga == (g == 1))[ok].mean()),
                    "gender_accuracy_int8": float((gb == (g == 1))[ok].mean()), "gender_changed": int((ga != gb).sum())})
    return out


def cache_faces(cache: Any, spec: Any, split: str, protocol: str | None = None, n: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """Float32 network inputs of a prepared cache's ``split`` rows (``n`` of them drawn with ``seed``, else all, in
    row order), the rows, and a description naming the cache folder by name only."""

    cache = cache if isinstance(cache, PreparedCache) else PreparedCache(cache)
    protocols = list(cache.protocols)
    if protocol is None:
        if len(protocols) != 1:
            raise ValueError(f"{cache.root}: choose a protocol among {protocols}")
        protocol = protocols[0]
    splits = cache.splits(protocol)
    if split not in splits or len(splits[split]) == 0:
        raise ValueError(f"{cache.root}: protocol {protocol!r} has no rows in split {split!r}")
    rows = np.asarray(splits[split], dtype=np.int64)
    if n is not None and n < len(rows):
        rows = np.random.default_rng(seed).choice(rows, n, replace=False)
    rows = np.sort(rows)
    crops = np.asarray(cache.view(spec.view_key)[rows])
    if spec.crops == "lmtcnn":  # LMTCNN's centre view
        o = (crops.shape[-2] - spec.size) // 2
        crops = crops[..., o : o + spec.size, o : o + spec.size, :]
    x = np.asarray(spec.normalize(crops), dtype=np.float32)
    where = f"{len(rows)} faces of the {split} split ({protocol}) of the prepared cache {Path(cache.root).name}"
    return x, rows, where


__all__: Sequence[str] = ("Int8Recipe", "Layer", "Selection", "age_drift", "cache_faces", "compare_speed",
                          "graph_layers", "quantize", "quantize_int8", "quantized_layers", "select_layers")
