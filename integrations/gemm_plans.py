"""The GEMM plans: which kernel runs a product of how many rows, saved per machine and reported.

`projection.kernel_plan` measures a plan once per machine and weight shape; this module holds the
plan's types, the plans in use in this process and the saved ones. A plan is saved per machine
(CPU model, torch version, thread count, shape, kernels, measuring method) in `gemm-plans.json`
under specdec's cache (`SPECDEC_CACHE`), so that every process on a machine runs the same plan and
only the first pays for measuring it: measured afresh in each process, the close calls among the
rungs came out differently from process to process. Kept apart from the kernels and their timing
(`projection.py`), which import this module and not the other way round.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, ContextManager, NamedTuple, Sequence

import torch

from specdec.defaults import cache_root
from specdec.machine import cpu_model
from specdec.progress import Progress, reporting

PLAN_FILE = "gemm-plans.json"


class Rung(NamedTuple):
    """Products of up to `rows` rows (and more than the previous rung's) run with `kernel`,
    padded to `pad` rows when `pad` is larger than their row count (0: never padded)."""

    rows: int
    kernel: str
    pad: int = 0


Plan = tuple[Rung, ...]  # rows ascending

# (out, in, dtype, threads, kernels) -> the plan `projection.kernel_plan` runs in this process
process_plans: dict[tuple, Plan] = {}


def plan_file() -> Path:
    return cache_root() / PLAN_FILE


def machine_key(out_features: int, in_features: int, dtype: torch.dtype, kernels: Sequence[str], method: str) -> str:
    """What a saved plan holds for: the machine, torch, threads, shape and kernels, and how the
    plan was measured (`method`, `projection.measuring_method`: a change of the ladder or the
    timing measures afresh)."""
    return (
        f"{cpu_model()} | torch {torch.__version__} | {torch.get_num_threads()} threads | "
        f"{str(dtype).removeprefix('torch.')} {out_features}x{in_features} | {','.join(kernels)} | method {method}"
    )


def load_saved_plans() -> dict[str, Any]:
    """The saved plans ({} when there are none; an unreadable file is reported and ignored)."""
    path = plan_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        warnings.warn(f"ignoring the saved GEMM plans in {path} ({error}); measuring instead", stacklevel=2)
        return {}
    return data if isinstance(data, dict) else {}


def parse_plan(entry: Any, kernels: Sequence[str]) -> Plan | None:
    """A saved plan ([[rows, kernel, pad], ...]) if it is well formed and its kernels are among
    `kernels` (those that run here)."""
    try:
        plan = tuple(Rung(int(rows), str(kernel), int(pad)) for rows, kernel, pad in entry)
    except (TypeError, ValueError):
        return None
    ascending = all(a.rows < b.rows for a, b in zip(plan, plan[1:]))
    valid = all(r.kernel in kernels and (r.pad == 0 or r.pad > r.rows) for r in plan)
    return plan if plan and ascending and valid else None


def save_plan(key: str, plan: Plan) -> None:
    """Add `plan` to the saved plans (written whole, then renamed: a reader never sees half a
    file). A cache that cannot be written is reported; the plan still serves this process."""
    path = plan_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = load_saved_plans()
        data[key] = [list(rung) for rung in plan]
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(partial, path)
    except OSError as error:
        warnings.warn(f"cannot save the GEMM plan to {path} ({error}); it will be measured again next time", stacklevel=2)


def timing_reported(out_features: int, in_features: int, dtype: torch.dtype, *, saved: bool) -> ContextManager[Progress]:
    """Report timing the kernels for one weight shape on stderr (`specdec.progress`): it happens
    once per machine and shape, on a first run, and takes about a second per shape."""
    shape = f"{out_features}x{in_features} ({str(dtype).removeprefix('torch.')})"
    why = f"once per machine, saved in {plan_file()}" if saved else "SPECDEC_GEMM=fresh: in every process"
    return reporting(f"timing the GEMM kernels for weight shape {shape} ({why})", done=f"timed the GEMM kernels for {shape}")


def measured_plans() -> dict[tuple[int, int], Plan]:
    """(out, in) -> plan for every shape measured in this process (for reports)."""
    return {(key[0], key[1]): plan for key, plan in process_plans.items()}


def gemm_report() -> dict[str, str]:
    """'OUTxIN' -> the plan in words, for every shape measured in this process (benchmark records)."""
    return {f"{out}x{inp}": describe(plan) for (out, inp), plan in sorted(measured_plans().items())}


def describe(plan: Plan) -> str:
    """E.g. 'onednn for 1-3 rows (padded to 4), onednn from 4 rows'."""
    parts, low = [], 1
    for index, (high, name, pad) in enumerate(plan):
        rows = f"{low}-{high} rows" if high > low else f"{low} row{'s' * (low > 1)}"
        padded = f" (padded to {pad})" if pad else ""
        parts.append(f"{name} from {low} row{'s' * (low > 1)}{padded}" if index == len(plan) - 1 else f"{name} for {rows}{padded}")
        low = high + 1
    return ", ".join(parts)
