"""Linear projections that use the fastest CPU kernel for the number of rows they get, measured.

A speculative round multiplies a handful of rows (1 to ~17 tokens) by every weight matrix, and
which GEMM kernel is fastest for so few rows depends on the CPU, not only on the shape: plain
`F.linear`, MKL's packed GEMM (weights reordered once, as PyTorch's compiler does for inference) or
oneDNN's prepacked linear each wins on some machine, and the wrong one can make a few-token verify
cost far more than a one-token step (measurements: docs/design-notes.md). So a hard-coded choice is
wrong somewhere. `kernel_plan` times the available kernels on matrices of the same shape at a
ladder of row counts (a few seconds for the default pair) and each projection then dispatches by
row count. The plan is saved per machine (`gemm_plans.py`: every process on a machine then runs
the same plan). `SPECDEC_GEMM` selects: `auto` (default: the saved plan, else measured and saved),
`fresh` (measured in this process, nothing read or saved), or a kernel name, forced everywhere (to
compare kernels).

The timing streams the weights from memory, as a forward does: a forward runs every matrix of the
model once, far more than the caches hold, so each product reads its weights from RAM. A matrix
timed over and over stays in cache and ranks the kernels differently. So each kernel is timed on
copies of the matrix totalling `COLD_BYTES`, one after the other. Cold, a few rows often cost
*less* than one or two: a product of r rows therefore runs as the rung >= r that measured fastest,
its input padded with zero rows and the extra output rows dropped. Every kernel and rung is timed
once per sweep, over several sweeps, and keeps its fastest time: a slow moment of the machine then
touches all rungs alike instead of deciding a padding.

Several matrices applied to the same input (q, k and v; gate and up) are fused into one product,
which saves a weight pass's fixed costs per layer. Weights on another device than the CPU (CUDA)
always run torch's own `F.linear`: the plans, the timing and the packed kernels are CPU matters. Only the kernel changes, never the weights: the
products agree with `torch.nn.functional.linear` to float rounding (tested for every kernel).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Callable, Mapping, Sequence

import attrs
import torch
import torch.nn.functional as F

from specdec.errors import ConfigurationError

from . import gemm_plans
from .gemm_plans import Plan, Rung

# the row counts timed; a product with r rows uses the choice for the smallest rung >= r (the
# largest rung beyond it: prompts are read in one product of hundreds of rows, where the kernels'
# order no longer changes, while timing such products on the LM head would cost seconds)
ROW_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
# MKL's packed kernel is smooth up to the row count its weights are laid out for and jumps past it
# (laid out for 4 rows, a 9-token target forward cost 1.3x an 8-token one); oneDNN's layout hint
# changes little past 8 (measured); both are laid out for the top of the ladder
LAYOUT_ROWS = 64
SWEEPS = 5  # timed sweeps over every kernel and rung after the first (each keeps its fastest)
# a kernel this many times slower than the fastest at a rung is not timed at larger rungs (the LM
# head's plain product at 24-64 rows alone would cost a second to time; none came back from 2x)
DROP_FACTOR = 2.0
# padding rows to a larger rung must save at least this share of the time (not timing noise)
PAD_GAIN = 0.05
# weights timed per kernel and rung, in copies of the matrix: beyond the CPU's caches (tens of MB)
COLD_BYTES = 64 << 20
# at most this many copies (a tiny model's matrices would need thousands; its timing is per-call
# overhead whatever the memory does)
MAX_COPIES = 64
ENVIRONMENT = "SPECDEC_GEMM"
FRESH = "fresh"  # SPECDEC_GEMM=fresh: measure in this process, read and save nothing

Timer = Callable[[str, int, Callable[[], object]], float]  # (kernel, rows, run) -> seconds of one run


@attrs.frozen
class Kernel:
    """One way to compute x @ W.T (+ b): `prepare` reorders W once, `apply` runs the product."""

    name: str
    available: Callable[[], bool]
    prepare: Callable[[torch.Tensor], torch.Tensor | None]
    apply: Callable[[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _mkl_packed_available() -> bool:
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


def _onednn_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


KERNELS: dict[str, Kernel] = {
    kernel.name: kernel
    for kernel in (
        Kernel("linear", lambda: True, lambda w: None, lambda x, packed, w, b: F.linear(x, w, b)),
        Kernel(
            "mkl-packed",
            _mkl_packed_available,
            lambda w: torch.ops.mkl._mkl_reorder_linear_weight(w, LAYOUT_ROWS),
            lambda x, packed, w, b: torch.ops.mkl._mkl_linear(x, packed, w, b, x.shape[0]),
        ),
        Kernel(
            "onednn",
            _onednn_available,
            lambda w: torch.ops.mkldnn._reorder_linear_weight(w, LAYOUT_ROWS),
            lambda x, packed, w, b: torch.ops.mkldnn._linear_pointwise(x, packed, b, "none", [], ""),
        ),
    )
}

def usable_kernels(dtype: torch.dtype) -> list[str]:
    """Kernels that run here for weights of `dtype` (the reordering kernels: float32 only)."""
    if dtype != torch.float32:
        return ["linear"]
    return [name for name, kernel in KERNELS.items() if kernel.available()]


def gemm_setting() -> str:
    """SPECDEC_GEMM: `auto` (also when unset), `fresh` or an available kernel; a clear error otherwise."""
    value = os.environ.get(ENVIRONMENT, "auto").strip() or "auto"
    if value in ("auto", FRESH):
        return value
    if value not in KERNELS:
        raise ConfigurationError(f"{ENVIRONMENT}={value!r}: choose auto, {FRESH} or one of {', '.join(KERNELS)}")
    if not KERNELS[value].available():
        raise ConfigurationError(f"{ENVIRONMENT}={value!r}: that kernel is not available in this torch build")
    return value


def time_once(kernel: str, rows: int, run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def choose(times: Mapping[str, Mapping[int, float]]) -> Plan:
    """The plan from measured seconds per kernel and rung: the fastest kernel at each rung, or,
    when a larger rung measured at least PAD_GAIN faster, the fastest kernel there with the rows
    padded to it; neighbouring rungs with the same choice merged."""
    rungs = sorted({rows for per_rung in times.values() for rows in per_rung})
    plan: list[Rung] = []
    for rows in rungs:
        own = min((per_rung[rows], name, rows) for name, per_rung in times.items() if rows in per_rung)
        padded = min(
            ((seconds, name, at) for name, per_rung in times.items() for at, seconds in per_rung.items() if at > rows),
            default=own,
        )
        best = padded if padded[0] < (1.0 - PAD_GAIN) * own[0] else own
        rung = Rung(rows, best[1], best[2] if best[2] > rows else 0)
        if plan and (plan[-1].kernel, plan[-1].pad) == (rung.kernel, rung.pad):
            plan[-1] = rung
        else:
            plan.append(rung)
    return tuple(plan)


def measure(out_features: int, in_features: int, kernels: Sequence[str], timer: Timer = time_once) -> dict[str, dict[int, float]]:
    """Seconds per product for each kernel and rung, on random matrices of this shape (timing does
    not depend on the values) streamed from memory: each timed run multiplies every one of
    `COLD_BYTES` worth of copies (at most MAX_COPIES) once.

    A first sweep up the ladder (each run after an untimed warm-up) drops the kernels DROP_FACTOR
    times slower than the fastest at a rung from the larger rungs; then SWEEPS more sweeps time
    every kernel and rung left once each, in ladder order, and each keeps its fastest time. The
    kernels left are timed up the whole ladder: a larger rung may be the faster way to multiply
    fewer rows (padding, `choose`)."""
    generator = torch.Generator().manual_seed(0)
    copies = max(1, min(MAX_COPIES, COLD_BYTES // (out_features * in_features * 4)))
    weights = [torch.randn(out_features, in_features, generator=generator) for _ in range(copies)]
    prepared = {name: [KERNELS[name].prepare(weight) for weight in weights] for name in kernels}
    times: dict[str, dict[int, float]] = {name: {} for name in kernels}
    runs: list[tuple[str, int, Callable[[], torch.Tensor]]] = []
    racing = list(kernels)
    with torch.inference_mode():
        for rows in ROW_LADDER:
            x = torch.randn(rows, in_features, generator=generator)
            for name in racing:
                run = _sweep(KERNELS[name], x, weights, prepared[name])
                run()
                times[name][rows] = timer(name, rows, run) / copies
                runs.append((name, rows, run))
            best = min(times[name][rows] for name in racing)
            racing = [name for name in racing if times[name][rows] <= DROP_FACTOR * best]
        for _ in range(SWEEPS):
            for name, rows, run in runs:
                times[name][rows] = min(times[name][rows], timer(name, rows, run) / copies)
    return times


def _sweep(kernel: Kernel, x: torch.Tensor, weights: Sequence[torch.Tensor], prepared: Sequence[torch.Tensor | None]) -> Callable[[], torch.Tensor]:
    """One product with each copy of the matrix in turn; returns the last product."""

    def run() -> torch.Tensor:
        for weight, packed in zip(weights, prepared):
            out = kernel.apply(x, packed, weight, None)
        return out

    return run


def kernel_plan(out_features: int, in_features: int, dtype: torch.dtype = torch.float32) -> Plan:
    """The kernel per row count for this shape on this machine: saved (`gemm_plans`), else
    measured (see the module docstring); looked up once per process."""
    setting = gemm_setting()
    if setting not in ("auto", FRESH):
        return (Rung(ROW_LADDER[-1], setting if setting in usable_kernels(dtype) else "linear"),)
    kernels = usable_kernels(dtype)
    if len(kernels) == 1:
        return (Rung(ROW_LADDER[-1], kernels[0]),)
    key = (out_features, in_features, dtype, torch.get_num_threads(), tuple(kernels))
    plans = gemm_plans.process_plans
    if key not in plans:
        saved_key = gemm_plans.machine_key(out_features, in_features, dtype, kernels, measuring_method())
        plan = gemm_plans.saved_plan(saved_key, kernels, ROW_LADDER) if setting == "auto" else None
        if plan is None:
            with gemm_plans.timing_reported(out_features, in_features, dtype, saved=setting == "auto"):
                plan = choose(measure(out_features, in_features, kernels))
            if setting == "auto":
                gemm_plans.save_plan(saved_key, plan)
        plans[key] = plan
    return plans[key]


def measuring_method() -> str:
    """A digest of how this module measures: a saved plan measured otherwise is measured afresh."""
    return hashlib.sha1(repr((ROW_LADDER, LAYOUT_ROWS, DROP_FACTOR, PAD_GAIN, COLD_BYTES, MAX_COPIES, SWEEPS)).encode()).hexdigest()[:8]


class FloatProjection:
    """`x @ W.T (+ b)` for float weights, several matrices fused into one (outputs concatenated)."""

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None] | None = None) -> None:
        self.weight = torch.cat([w.detach() for w in weights]).contiguous() if len(weights) > 1 else weights[0].detach().contiguous()
        self.bias = None
        if biases is not None and any(b is not None for b in biases):
            self.bias = torch.cat([b.detach() if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(weights, biases)])
        self.out_features = int(self.weight.shape[0])
        if self.weight.device.type == "cpu":
            self.plan = kernel_plan(self.out_features, int(self.weight.shape[1]), self.weight.dtype)
        else:  # the measured kernels are CPU kernels: elsewhere torch's own matmul, nothing timed
            self.plan = (Rung(ROW_LADDER[-1], "linear"),)
        prepared = {name: KERNELS[name].prepare(self.weight) for name in {rung.kernel for rung in self.plan}}
        # (up to rows, apply, its prepared weights, pad to) per rung, looked up on every call
        self._dispatch = [(rung.rows, KERNELS[rung.kernel].apply, prepared[rung.kernel], rung.pad) for rung in self.plan]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        for bound, apply, prepared, pad in self._dispatch:
            if rows <= bound:
                break
        if pad > rows:
            padded = torch.cat((x, x.new_zeros(pad - rows, x.shape[1])))
            return apply(padded, prepared, self.weight, self.bias)[:rows]
        return apply(x, prepared, self.weight, self.bias)


class ModuleProjection:
    """Applies modules that cannot be fused (e.g. int8 linears) and concatenates their outputs."""

    def __init__(self, modules: Sequence[torch.nn.Module]) -> None:
        self.modules = list(modules)
        self.out_features = sum(int(m.out_features) for m in self.modules)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.modules) == 1:
            return self.modules[0](x)
        return torch.cat([m(x) for m in self.modules], dim=-1)


def projection(*modules: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """The fastest projection for these linear modules (all applied to the same input)."""
    if all(type(m) is torch.nn.Linear for m in modules):
        return FloatProjection([m.weight for m in modules], [m.bias for m in modules])
    return ModuleProjection(modules)
