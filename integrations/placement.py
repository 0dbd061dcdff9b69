"""Where a model runs and in which dtype: the supported pairs and the checks of user input.

Supported: `cpu` with float32 or bfloat16, `cuda` (`cuda:N`) with float32, bfloat16 or float16.
float16 on a CPU is refused (its CPU kernels are slow and partly missing), as are other devices
and dtypes; each refusal is one `ConfigurationError` naming what is supported. What each dtype
guarantees is stated in docs/limits.md (bfloat16 and float16 round a many-token verify forward
differently from one-token steps).
"""

from __future__ import annotations

from typing import Any

import torch

from specdec.errors import ConfigurationError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SUPPORTED: dict[str, tuple[torch.dtype, ...]] = {
    "cpu": (torch.float32, torch.bfloat16),
    "cuda": (torch.float32, torch.bfloat16, torch.float16),
}
DEVICE_NAMES = ("cpu", "cuda")  # --device's choices (a cuda index is accepted too: cuda:1)


def dtype_name(dtype: torch.dtype) -> str:
    """`bfloat16` for `torch.bfloat16`: the name `--dtype` and the messages use."""
    return str(dtype).removeprefix("torch.")


def _supported_text() -> str:
    return "; ".join(f"{device}: {', '.join(dtype_name(d) for d in dtypes)}" for device, dtypes in SUPPORTED.items())


def as_dtype(value: Any) -> torch.dtype:
    """A dtype from a `torch.dtype` or its name (`"bfloat16"`); anything else is refused."""
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value.strip().removeprefix("torch.") in DTYPES:
        return DTYPES[value.strip().removeprefix("torch.")]
    raise ConfigurationError(f"dtype {value!r} is not one of {', '.join(DTYPES)} (supported per device: {_supported_text()})")


def as_device(value: Any) -> torch.device:
    """A device from a `torch.device` or its name (`"cpu"`, `"cuda"`, `"cuda:1"`), checked to exist here."""
    try:
        device = value if isinstance(value, torch.device) else torch.device(str(value).strip())
    except (RuntimeError, TypeError, ValueError):
        raise ConfigurationError(f"device {value!r} is not a device name: use cpu, cuda or cuda:N") from None
    if device.type not in SUPPORTED:
        raise ConfigurationError(f"device {str(device)!r} is not supported: use cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise ConfigurationError(f"device {str(device)!r} asked for, but torch ({torch.__version__}, {build}) sees no CUDA device here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigurationError(f"device {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def placement(device: Any = None, dtype: Any = None) -> tuple[torch.device, torch.dtype]:
    """The checked (device, dtype) a model is loaded with; None means cpu and float32."""
    where = as_device("cpu" if device is None else device)
    kind = as_dtype(torch.float32 if dtype is None else dtype)
    if kind not in SUPPORTED[where.type]:
        raise ConfigurationError(
            f"dtype {dtype_name(kind)} is not supported on {where.type}: supported are {_supported_text()}"
        )
    return where, kind


def model_device(model: Any) -> torch.device:
    """The device of a module's weights (its first parameter's)."""
    return next(model.parameters()).device
