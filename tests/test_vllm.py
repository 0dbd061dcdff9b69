"""specdec's strategies inside the real vLLM engine (CPU build): greedy output identical to vLLM's
own target-only output, drafts proposed and accepted, and the verdicts specdec reads back from
vLLM's emitted tokens equal to vLLM's own acceptance counters.

One engine per configuration, shared by the module's tests (an engine start costs 30-90 s on two
cores); each engine serves one batch of concurrent requests of different prompt and output
lengths, one of which ends on the end-of-sequence token.
"""

from __future__ import annotations

import gc
import importlib.util
import os
from typing import Any

import pytest

if importlib.util.find_spec("vllm") is None:  # installed but broken is a failure, not a skip
    pytest.skip("vLLM is not installed (pip install torch==2.13.0 -e '.[vllm]', see the README)", allow_module_level=True)

from specdec.defaults import default_draft, default_target  # noqa: E402
from specdec.integrations.vllm import engine_stats, speculative_config, vllm_model_dir  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

K = 4  # slots vLLM reserves per request's draft
PASSAGE = (
    "The lighthouse keeper climbed the stairs every evening at six, lit the lamp, wound the clock, "
    "and wrote the weather in a small green book."
)
# (user message, max_tokens): different prompt and output lengths; copies for prompt lookup
REQUESTS = [
    ("Say hello in one word.", 48),  # ends on the end-of-sequence token well before its limit
    (f"Repeat this sentence exactly: {PASSAGE}", 60),
    ("Count from 1 to 30, separated by commas.", 70),
    (f"Summarize in one sentence: {PASSAGE}", 40),
    ("What is 12 * 7?", 24),
    ("List the days of the week.", 36),
    (f"Copy the text twice: {PASSAGE}", 64),
    ("Write a haiku about the sea.", 30),
    ("Name three primary colors.", 20),
]
CONFIGURATIONS = {
    "prompt-lookup+fixed": dict(proposer="prompt-lookup", policy="fixed", policy_params={"k": 3}),
    "prompt-lookup+svip": dict(proposer="prompt-lookup", policy="svip"),
    "draft+fixed": dict(proposer="draft", policy="fixed", policy_params={"k": 3}),
    "draft+svip": dict(proposer="draft", policy="svip"),
}


def _engine(speculative: dict[str, Any] | None):
    from vllm import LLM

    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return LLM(
        str(vllm_model_dir(default_target())),
        speculative_config=speculative,
        enforce_eager=True,
        dtype="float32",
        max_model_len=1024,
        max_num_seqs=16,
        disable_log_stats=False,
        seed=0,
    )


def _close(llm: Any) -> None:
    llm.llm_engine.engine_core.shutdown()
    del llm
    gc.collect()


def _prompts(llm: Any) -> tuple[list[str], list[Any]]:
    from vllm import SamplingParams

    tokenizer = llm.get_tokenizer()
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": m}], tokenize=False, add_generation_prompt=True)
        for m, _ in REQUESTS
    ]
    return texts, [SamplingParams(temperature=0.0, max_tokens=n) for _, n in REQUESTS]


def _run(llm: Any) -> list[tuple[tuple[int, ...], str]]:
    texts, params = _prompts(llm)
    outputs = llm.generate(texts, params, use_tqdm=False)
    return [(tuple(o.outputs[0].token_ids), o.outputs[0].finish_reason) for o in outputs]


def _counters(llm: Any) -> dict[str, int]:
    names = {"vllm:spec_decode_num_draft_tokens": "drafted", "vllm:spec_decode_num_accepted_tokens": "accepted"}
    return {names[m.name]: int(m.value) for m in llm.get_metrics() if m.name in names}


@pytest.fixture(scope="module")
def reference() -> list[tuple[tuple[int, ...], str]]:
    """vLLM's own target-only greedy output of the batch."""
    llm = _engine(None)
    try:
        out = _run(llm)
    finally:
        _close(llm)
    assert [reason for _, reason in out].count("stop") >= 1, "no request of the batch ends on end-of-sequence"
    assert "length" in [reason for _, reason in out]
    return out


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def speculative(request) -> dict[str, Any]:
    """One batch through an engine running a specdec configuration: outputs, specdec's counts,
    vLLM's counters."""
    options = dict(CONFIGURATIONS[request.param])
    if options["proposer"] == "draft":
        options["draft"] = default_draft()
    llm = _engine(speculative_config(num_speculative_tokens=K, **options))
    try:
        out = _run(llm)
        stats, counters = engine_stats(llm), _counters(llm)
    finally:
        _close(llm)
    return {"name": request.param, "out": out, "stats": stats, "counters": counters}


def test_greedy_output_is_vllm_target_only_output(reference, speculative):
    for i, ((want, want_reason), (got, got_reason)) in enumerate(zip(reference, speculative["out"])):
        assert got == want, f"{speculative['name']}: request {i} differs from target-only"
        assert got_reason == want_reason


def test_drafts_are_proposed_and_accepted(speculative):
    stats = speculative["stats"]
    assert stats["requests_started"] == len(REQUESTS)
    assert stats["drafted"] > 0 and stats["accepted"] > 0, f"{speculative['name']}: {stats}"


def test_the_verdicts_read_back_are_vllms(speculative):
    """What specdec fed back to each request's policy and proposer adds up to vLLM's own counters
    (a verdict read off by one position, or attributed to the wrong request, does not)."""
    stats, counters = speculative["stats"], speculative["counters"]
    assert (stats["drafted"], stats["accepted"]) == (counters["drafted"], counters["accepted"]), speculative["name"]
