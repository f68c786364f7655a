"""Training precision and memory layout chosen per model from a measured probe, not from a fixed rule.

With ``trainer.precision: auto`` and/or ``trainer.channels_last: auto`` a run times a few training steps (forward,
backward, SGD step) of its own network on its own batch shape in each candidate setting - float32 or bfloat16
autocast, contiguous or channels-last - and trains with the fastest (:func:`probe`, :func:`resolve_auto`). With
``trainer.compile: auto`` the fastest setting is also timed under ``torch.compile`` (Inductor, which fuses
BatchNorm, activations and pooling, forward and backward), and the run compiles its network only where that is
faster. bf16
is a candidate only where the CPU has native bf16 (avx512_bf16 or AMX) or on a CUDA device that supports it. The
choice and the timings go into the run folder (``probe.json``) and its card, and a resumed run keeps them.

Also here: :func:`host_info` (CPU model, SIMD flags, versions, load average: printed with every benchmark table)
and :func:`gemm_peak` (the GEMM rate of torch and of ONNX Runtime on a number of threads: the FLOP limit that
training throughput is measured against, ``3 x forward MACs x images/s / peak``).
"""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agekit.models.registry import create_model

FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8",
         "amx_tile")
PRECISIONS = ("32-true", "bf16-mixed")
PROBE_FILE = "probe.json"


def cpu_flags() -> set[str]:
    """The CPU's flags from /proc/cpuinfo (empty where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def host_info(threads: int | None = None) -> dict[str, Any]:
    """CPU model, the SIMD flags that matter here, cores, threads, library versions and the load average."""
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    have = cpu_flags()
    info: dict[str, Any] = {"cpu": cpu, "flags": [f for f in FLAGS if f in have], "cores": os.cpu_count(),
                            "threads": threads, "python": platform.python_version(),
                            "load_average": [round(v, 2) for v in os.getloadavg()]}
    for lib in ("torch", "onnxruntime", "numpy"):
        try:
            info[lib] = __import__(lib).__version__
        except ImportError:
            info[lib] = None
    return info


def bf16_native(device: str = "cpu") -> bool:
    """Whether bf16 autocast runs on native bf16 instructions: avx512_bf16 / AMX on a CPU, or a CUDA device that
    supports bf16."""
    if device.startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def candidates(precision: str = "auto", channels_last: bool | str = "auto", device: str = "cpu") -> list[tuple[str, bool]]:
    """The (precision, channels_last) settings a probe times: "auto" expands, a fixed value stays as it is."""
    if precision == "auto":
        precs = ["32-true", "bf16-mixed"] if bf16_native(device) else ["32-true"]
    else:
        precs = [precision]
    layouts = [False, True] if channels_last == "auto" else [bool(channels_last)]
    return [(p, c) for p in precs for c in layouts]


def pick_fastest(timings: dict[tuple[str, bool], float], margin: float = 0.03) -> tuple[str, bool]:
    """The setting with the most images/s; a setting listed earlier (float32, contiguous: the plainer one) is kept
    unless a later one beats it by more than ``margin`` (a fraction), so noise never flips the choice."""
    if not timings:
        raise ValueError("no probe timings to choose from")
    best = next(iter(timings))
    for k, v in timings.items():
        if v > timings[best] * (1.0 + margin):
            best = k
    return best


def setting_name(precision: str, channels_last: bool) -> str:
    return f"{precision}{' + channels-last' if channels_last else ''}"


@dataclass
class ProbeResult:
    """The chosen setting and the images/s measured for each candidate."""

    precision: str
    channels_last: bool
    timings: dict[tuple[str, bool], float]
    batch: int
    steps: int
    threads: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    compile: bool = False  # chosen: the network trains under torch.compile
    compiled: float | None = None  # images/s of the chosen setting under torch.compile (None: not timed)

    def to_dict(self) -> dict[str, Any]:
        rates = {setting_name(p, c): round(v, 1) for (p, c), v in self.timings.items()}
        if self.compiled is not None:
            rates[setting_name(self.precision, self.channels_last) + " + torch.compile"] = round(self.compiled, 1)
        return {"precision": self.precision, "channels_last": self.channels_last, "compile": self.compile,
                "batch": self.batch, "steps": self.steps, "threads": self.threads, "seconds": round(self.seconds, 2),
                "images_per_s": rates, "notes": self.notes}


def _float_tensors(out: Any) -> Iterable[Any]:
    import torch

    if isinstance(out, torch.Tensor):
        if out.is_floating_point() and out.requires_grad:
            yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _float_tensors(v)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _float_tensors(v)
    elif hasattr(out, "__dict__"):
        for v in vars(out).values():
            yield from _float_tensors(v)


def time_training_steps(model: Any, input_shape: Sequence[int], batch: int, precision: str, channels_last: bool,
                        steps: int = 4, warmup: int = 2, device: str = "cpu",
                        step_fn: Callable[[Any, Any], Any] | None = None, compile: bool = False) -> float:
    """Images/s of ``steps`` timed training steps (after ``warmup``) of ``model`` (changed in place: give a copy) on
    random inputs of ``(batch, *input_shape)``: forward under the precision's autocast, a loss, backward, SGD step.

    ``step_fn(model, x)`` returns the loss; the default sums the means of every float output with a gradient
    (the heads' own losses cost a negligible share of a step). ``compile``: the steps run the network through
    ``torch.compile`` (Inductor; compiled during the warm-up, which is not timed)."""
    import torch

    dev = torch.device(device)
    model = model.to(dev).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)
    x = torch.rand(batch, *input_shape, device=dev)
    if channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    net = torch.compile(model) if compile else model
    bf16 = precision.startswith("bf16")
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = net(x)
            loss = step_fn(model, out) if step_fn else sum(t.float().mean() for t in _float_tensors(out))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return batch * steps / (time.perf_counter() - t0)


def probe(make_model: Callable[[], Any], input_shape: Sequence[int], batch: int, precision: str = "auto",
          channels_last: bool | str = "auto", steps: int = 4, warmup: int = 2, device: str = "cpu",
          rounds: int = 2, margin: float = 0.03, timer: Callable[..., float] | None = None,
          compile: bool | str = False) -> ProbeResult:
    """Time every candidate setting (:func:`candidates`) on a fresh network from ``make_model()``, in ``rounds``
    interleaved rounds (best of them: other load only slows a round), and choose with :func:`pick_fastest`.
    ``compile="auto"``: then time the chosen setting under torch.compile as well (``rounds`` times against the plain
    one, interleaved) and compile when that beats it by more than ``margin``; a compile that fails (no C++ compiler,
    an unsupported op) is a note and no compile. ``timer`` replaces :func:`time_training_steps` (same arguments
    after the model)."""
    import torch

    timer = timer or time_training_steps
    settings = candidates(precision, channels_last, device)
    t0 = time.perf_counter()
    timings: dict[tuple[str, bool], float] = {}
    if len(settings) > 1:
        state = torch.random.get_rng_state()
        models = {s: make_model() for s in settings}
        for r in range(rounds):
            for s in settings if r % 2 == 0 else settings[::-1]:
                v = timer(models[s], input_shape, batch, s[0], s[1], steps=steps, warmup=warmup if r == 0 else 1,
                          device=device)
                timings[s] = max(timings.get(s, 0.0), v)
        torch.random.set_rng_state(state)  # the run's own random stream is not moved by the probe
    chosen = pick_fastest(timings, margin) if len(settings) > 1 else settings[0]  # nothing to measure for one
    res = ProbeResult(chosen[0], chosen[1], timings, batch, steps, torch.get_num_threads(), 0.0)
    if compile == "auto":
        state = torch.random.get_rng_state()
        plain, compiled = make_model(), make_model()
        kw = {"steps": steps, "device": device}
        try:
            for r in range(rounds):
                for c in (False, True) if r % 2 == 0 else (True, False):
                    w = (warmup + 1 if c else warmup) if r == 0 else 1  # the compile happens in the first warm-up
                    v = timer(compiled if c else plain, input_shape, batch, chosen[0], chosen[1], warmup=w, compile=c,
                              **kw)
                    if c:
                        res.compiled = max(res.compiled or 0.0, v)
                    else:
                        timings[chosen] = max(timings.get(chosen, 0.0), v)
            res.compile = bool(res.compiled > timings[chosen] * (1.0 + margin))
        except Exception as e:  # noqa: BLE001 - Inductor's failures have many types; training goes on uncompiled
            res.notes.append(f"torch.compile failed, not used: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
            res.compiled, res.compile = None, False
        torch.random.set_rng_state(state)
    res.seconds = time.perf_counter() - t0
    return res


def resolve_auto(recipe: Any, out_dir: str | Path | None = None, config: dict[str, Any] | None = None,
                 spec: Any = None, printer: Callable[[str], None] = print) -> tuple[Any, dict[str, Any] | None]:
    """A recipe whose ``trainer.precision`` / ``trainer.channels_last`` "auto" are replaced by a probe's choice, and
    the probe's record (None when nothing was "auto"). A run folder holding ``probe.json`` (a resumed run) keeps the
    choice it made. The probe times ``recipe.model`` (with ``config``, default the recipe's) on inputs shaped as
    ``spec`` (a PreprocessSpec; default the network's own) at ``recipe.data.batch_size``, on the recipe's device;
    the torch random state is left as it was. A multi-process run (several devices or nodes) is refused: its
    processes could choose differently."""
    t = recipe.trainer
    if "auto" not in (t.precision, t.channels_last, t.compile):
        return recipe, None
    if t.num_nodes != 1 or str(t.devices) not in ("1", "[0]", "auto"):
        raise ValueError("trainer.precision / channels_last 'auto' is measured in one process; give fixed values for "
                         f"a run on several devices or nodes (devices={t.devices}, num_nodes={t.num_nodes})")
    saved = Path(out_dir) / PROBE_FILE if out_dir is not None else None
    if saved is not None and saved.is_file():
        rec = json.loads(saved.read_text())
        printer(f"probe: keeping {setting_name(rec['precision'], rec['channels_last'])} from {saved}")
    else:
        import torch


        name = recipe.model.name
        config = dict(recipe.model.config if config is None else config)
        if spec is None:
            spec = create_model(name, **config).preprocess
        shape = (spec.num_crops, 3, spec.size, spec.size) if spec.num_crops > 1 else (3, spec.size, spec.size)
        cuda = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
        res = probe(lambda: create_model(name, **config), shape, int(recipe.data.batch_size), t.precision,
                    t.channels_last, device="cuda" if cuda else "cpu", compile=t.compile)
        rec = res.to_dict()
        printer(f"probe ({res.seconds:.1f} s, batch {res.batch}, {res.threads} threads): "
                + ", ".join(f"{k} {v:.0f} img/s" for k, v in rec["images_per_s"].items())
                + f" -> {setting_name(res.precision, res.channels_last)}"
                + (" + torch.compile" if res.compile else "") + "".join(f"; {n}" for n in res.notes))
        if saved is not None:
            saved.parent.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(rec, indent=1) + "\n")
    update: dict[str, Any] = {"precision": rec["precision"], "channels_last": bool(rec["channels_last"])}
    if t.compile == "auto":
        update["compile"] = bool(rec.get("compile", False))
    new_t = t.model_copy(update=update)
    return recipe.model_copy(update={"trainer": new_t}), rec


def gemm_peak(threads: int = 1, backend: str = "torch", dtype: str = "float32", n: int = 512,
              repeats: int = 20) -> float:
    """GMAC/s of an n x n x n matrix product (median of ``repeats``) on ``threads`` threads: ``backend`` "torch"
    (float32 or bfloat16) or "onnxruntime" (its MatMul, float32)."""

    if backend == "onnxruntime":
        import onnxruntime as ort
        from onnx import TensorProto, helper

        g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        a = np.random.default_rng(0).random((n, n), dtype=np.float32)
        call = lambda: s.run(None, {"a": a, "b": a})  # noqa: E731
    elif backend == "torch":
        import torch

        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        a = torch.rand(n, n).to(getattr(torch, dtype))
        call = lambda: a @ a  # noqa: E731
    else:
        raise ValueError(f"backend must be 'torch' or 'onnxruntime', not {backend!r}")
    try:
        for _ in range(3):
            call()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            ts.append(time.perf_counter() - t0)
    finally:
        if backend == "torch":
            torch.set_num_threads(prev)
    return n**3 / float(np.median(ts)) / 1e9


__all__: Sequence[str] = ("ProbeResult", "candidates", "gemm_peak", "host_info", "pick_fastest", "probe",
                          "resolve_auto", "time_training_steps")
