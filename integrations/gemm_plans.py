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
MAX_PLAN_FILE = 1 << 20  # bytes: thousands of plans; a larger file is not one specdec wrote


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
        if path.stat().st_size > MAX_PLAN_FILE:
            raise ValueError(f"larger than {MAX_PLAN_FILE} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as error:  # RecursionError: nesting deeper than json reads
        warnings.warn(f"ignoring the saved GEMM plans in {path} ({type(error).__name__}: {error}); measuring instead", stacklevel=2)
        return {}
    if not isinstance(data, dict):
        warnings.warn(f"ignoring the saved GEMM plans in {path} (not a JSON object); measuring instead", stacklevel=2)
        return {}
    return data


def saved_plan(key: str, kernels: Sequence[str], rungs: Sequence[int]) -> Plan | None:
    """The plan saved for `key`, if there is one and `plan_problem` finds nothing wrong with it; a
    bad one is reported and ignored (measured again, and replaced when saved)."""
    entry = load_saved_plans().get(key)
    if entry is None:
        return None
    problem = plan_problem(entry, kernels, rungs)
    if problem:
        warnings.warn(f"ignoring the saved GEMM plan for {key} in {plan_file()} ({problem}); measuring again", stacklevel=2)
        return None
    return parse_plan(entry, kernels, rungs)


def parse_plan(entry: Any, kernels: Sequence[str], rungs: Sequence[int]) -> Plan | None:
    """A saved plan ([[rows, kernel, pad], ...]) if `plan_problem` finds nothing wrong with it."""
    if plan_problem(entry, kernels, rungs):
        return None
    return tuple(Rung(rows, kernel, pad) for rows, kernel, pad in entry)


def plan_problem(entry: Any, kernels: Sequence[str], rungs: Sequence[int]) -> str | None:
    """What makes `entry` no plan this process could have measured (None: nothing).

    A plan is read from a file anyone may edit, and a pad is the row count a product is padded
    to: every row count must be a rung of the ladder (`rungs`), the kernels among `kernels` (those
    that run here), the rows ascending and each pad 0 or a larger rung.
    """
    if not isinstance(entry, list) or not 0 < len(entry) <= len(rungs):
        return f"expected a list of at most {len(rungs)} [rows, kernel, pad] rungs"
    for rung in entry:
        if not (isinstance(rung, list) and len(rung) == 3):
            return f"a rung is {_short(rung)}, not [rows, kernel, pad]"
        rows, kernel, pad = rung
        if not _whole(rows) or rows not in rungs:
            return f"rows {_short(rows)} is not one of the ladder's row counts {list(rungs)}"
        if kernel not in kernels:
            return f"kernel {_short(kernel)} is not one of {', '.join(kernels)}"
        if not _whole(pad) or (pad != 0 and (pad not in rungs or pad <= rows)):
            return f"pad {_short(pad)} for {rows} rows is neither 0 nor a larger row count of the ladder"
    if any(a[0] >= b[0] for a, b in zip(entry, entry[1:])):
        return "the rows are not ascending"
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
