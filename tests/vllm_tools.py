"""Real vLLM engines for the tests, run in the test process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`):
one `LLMEngine.step()` is one scheduler step, what the worker holds between steps is observable,
and a test can plant a bug in the worker's functions.

vLLM's CPU worker replaces `torch.set_num_threads` by a no-op before it means to set one thread
for serving, so in this process the engine steps with torch's default threads, whose spin-waits
make every small op slow on a busy machine (a tiny draft's forward about 20 times slower). The
engine here steps with one thread, as vLLM intends; closing it restores torch's threads and its
`set_num_threads` for the tests that run after.
"""

from __future__ import annotations

import contextlib
import gc
import os
from typing import Any, Iterator

import torch


@contextlib.contextmanager
def vllm_engine(model: str | os.PathLike, speculative: dict[str, Any] | None, **options: Any) -> Iterator[Any]:
    """A `vllm.LLM` on `model` (eager, float32, seed 0, 1 GiB of KV cache unless the environment
    says otherwise), shut down on exit; `options` go to `LLM`."""
    from vllm import LLM

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    threads, set_num_threads = torch.get_num_threads(), torch.set_num_threads
    llm = None
    try:
        llm = LLM(str(model), speculative_config=speculative, **{"enforce_eager": True, "dtype": "float32", "seed": 0, **options})
        torch._C.set_num_threads(1)  # what vLLM's set_torch_threads_for_runtime means to do (module docstring)
        yield llm
    finally:
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
            del llm
            gc.collect()
        torch.set_num_threads = set_num_threads
        torch.set_num_threads(threads)
