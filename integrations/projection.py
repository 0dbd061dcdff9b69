"""Linear projections that pick the fastest CPU kernel for the number of rows they get.

A speculative round multiplies a handful of rows (1 to ~17 tokens) by every weight matrix. On a CPU
that is bound by reading the weights, and MKL's default single-precision GEMM switches kernels at
4 rows: a 4-token target forward then costs about 1.5x a 3-token one (the draft's README saw
the jump). MKL's packed GEMM (the weights reordered once, as PyTorch's compiler does for
inference) does not have that cliff: 8 rows cost about 1.4x one row instead of 2.3x, as long as
the weights are packed for at least as many rows as the product gets (`PACKED_LAYOUT_ROWS`). For 1-3 rows
the plain kernel is slightly faster, so `FloatProjection` dispatches by row count. Several
matrices applied to the same input (q, k and v; gate and up) are fused into one product, which
saves a weight pass's fixed costs per layer.

Only the kernel changes, never the weights: the products agree with `torch.nn.functional.linear`
to float rounding.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

PACKED_MIN_ROWS = 4  # below this, the plain kernel is as fast or faster (measured on the default pair)
# the row count the weights are packed for: MKL's packed kernel is smooth up to it and jumps past
# it (packed for 4 rows, a 9-token target forward cost 1.3x an 8-token one: 66 vs 49 ms); packed
# for 64, 1-8 rows cost the same as before and 9-17 rows 20-30% less (docs/benchmarks.md)
PACKED_LAYOUT_ROWS = 64


def _packed_gemm_available() -> bool:
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


class FloatProjection:
    """`x @ W.T (+ b)` for float weights, several matrices fused into one (outputs concatenated)."""

    def __init__(self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor | None] | None = None) -> None:
        self.weight = torch.cat([w.detach() for w in weights]).contiguous() if len(weights) > 1 else weights[0].detach().contiguous()
        self.bias = None
        if biases is not None and any(b is not None for b in biases):
            self.bias = torch.cat([b.detach() if b is not None else w.new_zeros(w.shape[0]) for w, b in zip(weights, biases)])
        self.out_features = int(self.weight.shape[0])
        self._packed = None
        if _packed_gemm_available() and self.weight.dtype == torch.float32:
            self._packed = torch.ops.mkl._mkl_reorder_linear_weight(self.weight, PACKED_LAYOUT_ROWS)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        if self._packed is not None and rows >= PACKED_MIN_ROWS:
            return torch.ops.mkl._mkl_linear(x, self._packed, self.weight, self.bias, rows)
        return F.linear(x, self.weight, self.bias)


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
