"""specdec's strategies inside the real vLLM engine (CPU build): greedy output identical to vLLM's
own target-only output, drafts proposed and accepted, the verdicts specdec reads back from vLLM's
emitted tokens equal to vLLM's own acceptance counters, and no request state left behind by
requests that end (on their own tokens or a stop string), arrive while others run, or are aborted:
not for one step.

Every proposer (prompt lookup, the draft model, Ouroboros) under fixed, svip and auto: one engine
per configuration, shared by the module's tests (its start and its requests take 15-25 s on two
cores, so separate engines cost little and keep each configuration's counts its own). Each engine
serves one batch of concurrent requests of different prompt and output lengths, one of which ends
on the end-of-sequence token, then the arrival, stop-string and abort scenario.
The engine core runs in the test process (`tests.vllm_tools`), so that one `LLMEngine.step()` is
one scheduler step and what the worker holds between steps is observable.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

if importlib.util.find_spec("vllm") is None:  # installed but broken is a failure, not a skip
    pytest.skip("vLLM is not installed (pip install torch==2.13.0 -e '.[vllm]', see the README)", allow_module_level=True)

from specdec.defaults import default_draft, default_target  # noqa: E402
from specdec.integrations.vllm import engine_stats, speculative_config, vllm_model_dir  # noqa: E402
from tests.vllm_tools import vllm_engine  # noqa: E402

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
    "prompt-lookup+auto": dict(proposer="prompt-lookup", policy="auto"),
    "draft+fixed": dict(proposer="draft", policy="fixed", policy_params={"k": 3}),
    "draft+svip": dict(proposer="draft", policy="svip"),
    "draft+auto": dict(proposer="draft", policy="auto"),
    "ouroboros+fixed": dict(proposer="ouroboros", policy="fixed", policy_params={"k": 4}),
    "ouroboros+svip": dict(proposer="ouroboros", policy="svip"),
    "ouroboros+auto": dict(proposer="ouroboros", policy="auto"),
}
USES_DRAFT = ("draft", "ouroboros")


def _engine(speculative: dict[str, Any] | None):
    """The default target, with `speculative` (None: target-only)."""
    return vllm_engine(vllm_model_dir(default_target()), speculative, max_model_len=1024, max_num_seqs=16, disable_log_stats=False)


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
    with _engine(None) as llm:
        out = _run(llm)
    assert [reason for _, reason in out].count("stop") >= 1, "no request of the batch ends on end-of-sequence"
    assert "length" in [reason for _, reason in out]
    return out


def _lifecycle(llm: Any, reference: list[tuple[tuple[int, ...], str]]) -> dict[str, Any]:
    """Four requests run; one arrives while they run, one long one is aborted mid-way and one
    stops at a stop string (a piece of its target-only text). After every step and right after the
    abort, the worker must hold state for exactly the requests still unfinished (each has had its
    first step by then): an ended request's state goes at once. Returns the finished outputs by
    request id, the moments that broke that rule, and specdec's counts at the end."""
    from vllm import SamplingParams

    engine = llm.llm_engine
    texts, params = _prompts(llm)
    tokenizer = llm.get_tokenizer()
    outputs: dict[str, Any] = {}
    held_wrong: list[str] = []

    def check(moment: str) -> None:
        live, unfinished = engine_stats(llm)["live_requests"], engine.get_num_unfinished_requests()
        if live != unfinished:
            held_wrong.append(f"{moment}: state for {live} requests, {unfinished} unfinished")

    def step(moment: str) -> None:
        for output in engine.step():
            if output.finished:
                outputs[output.request_id] = output
        check(moment)

    stop = tokenizer.decode(reference[STOPPED][0][8:10])  # reached well before the request's end
    before = engine_stats(llm)["requests_started"]
    for i in RUNNING:
        engine.add_request(f"running-{i}", texts[i], params[i])
    engine.add_request("stopped", texts[STOPPED], SamplingParams(temperature=0.0, max_tokens=len(reference[STOPPED][0]), stop=[stop]))
    for n in range(3):
        step(f"step {n}")
    engine.add_request("arrived", texts[ARRIVING], params[ARRIVING])
    engine.add_request("aborted", texts[ABORTED], SamplingParams(temperature=0.0, max_tokens=200, ignore_eos=True))
    for n in range(3):
        step(f"step {n + 3}")
    begun = engine_stats(llm)["requests_started"] - before
    engine.abort_request(["aborted"])
    check("right after the abort")
    while engine.has_unfinished_requests():
        step("a later step")
    return {"outputs": outputs, "begun_before_abort": begun, "held_wrong": held_wrong, "stop": stop, "at_end": engine_stats(llm)}


RUNNING = (0, 1, 2, 3)  # request indices the scenario starts with
STOPPED = 6  # started with them, ends at a stop string
ARRIVING = 5  # arrives while they run
ABORTED = 1  # prompt of the aborted request (asked for 200 tokens, ignoring the end of sequence)
LIFECYCLE_REQUESTS = len(RUNNING) + 3


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def speculative(request, reference) -> dict[str, Any]:
    """One engine running a specdec configuration: the batch's outputs, specdec's counts and
    vLLM's counters after it, then the arrival, stop-string and abort scenario on the same engine."""
    options = dict(CONFIGURATIONS[request.param])
    if options["proposer"] in USES_DRAFT:
        options["draft"] = default_draft()
    with _engine(speculative_config(num_speculative_tokens=K, **options)) as llm:
        out = _run(llm)
        stats, counters = engine_stats(llm), _counters(llm)
        lifecycle = _lifecycle(llm, reference)
    return {"name": request.param, "out": out, "stats": stats, "counters": counters, "lifecycle": lifecycle}


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


def test_requests_that_end_leave_no_state_at_once(speculative):
    """The requests ended on the end-of-sequence token or max_tokens in the last step; the worker
    has not yet been told, so only the proposer's own reading of their tokens can have dropped them."""
    stats = speculative["stats"]
    assert (stats["live_requests"], stats["requests_finished"]) == (0, len(REQUESTS)), f"{speculative['name']}: {stats}"


def test_arrival_stop_string_and_abort_leave_no_state_behind(reference, speculative):
    name, run = speculative["name"], speculative["lifecycle"]
    outputs = run["outputs"]
    assert run["begun_before_abort"] == LIFECYCLE_REQUESTS, f"{name}: the arriving and the aborted request were not both drafted for"
    for request_id, index in [*((f"running-{i}", i) for i in RUNNING), ("arrived", ARRIVING)]:
        assert tuple(outputs[request_id].outputs[0].token_ids) == reference[index][0], f"{name}: {request_id} differs from target-only"
    stopped = outputs["stopped"].outputs[0]
    assert (stopped.finish_reason, stopped.stop_reason) == ("stop", run["stop"]), f"{name}: {stopped}"
    assert len(stopped.token_ids) < len(reference[STOPPED][0]), f"{name}: the stop string {run['stop']!r} did not stop it early"
    assert "aborted" not in outputs or outputs["aborted"].outputs[0].finish_reason == "abort"
    assert not run["held_wrong"], f"{name}: an ended request's state outlived it: {run['held_wrong']}"
    started = len(REQUESTS) + LIFECYCLE_REQUESTS
    at_end = run["at_end"]
    assert (at_end["live_requests"], at_end["requests_started"], at_end["requests_finished"]) == (0, started, started), f"{name}: {at_end}"


VARIANTS = {  # selected per request on one engine whose own strategies are prompt lookup under fixed
    "draft-svip": {"policy": "svip", "proposer": "draft"},
    "ouroboros-auto": {"policy": "auto", "proposer": "ouroboros"},
}
SELECTED = [None, "draft-svip", "ouroboros-auto", "no-such-variant"]  # request i selects SELECTED[i % 4]


@pytest.fixture(scope="module")
def variants() -> dict[str, Any]:
    """One engine, the batch with each request selecting a variant (or none, or an unknown one)."""
    from vllm import SamplingParams

    config = speculative_config(
        policy="fixed", proposer="prompt-lookup", policy_params={"k": 3}, draft=default_draft(), num_speculative_tokens=K, variants=VARIANTS
    )
    with _engine(config) as llm:
        texts, _ = _prompts(llm)
        chosen = [SELECTED[i % len(SELECTED)] for i in range(len(REQUESTS))]
        params = [
            SamplingParams(temperature=0.0, max_tokens=n, extra_args={"specdec": name} if name else None)
            for (_, n), name in zip(REQUESTS, chosen)
        ]
        outputs = llm.generate(texts, params, use_tqdm=False)
        return {"out": [(tuple(o.outputs[0].token_ids), o.outputs[0].finish_reason) for o in outputs], "chosen": chosen, "stats": engine_stats(llm)}


def test_requests_of_one_batch_run_the_variants_they_select(reference, variants):
    """Each variant drafts for the requests that select it, beside the engine's own strategies,
    in the same batch; an unknown name runs the engine's own; every output is target-only's."""
    assert variants["out"] == reference
    wanted: dict[str, int] = {}
    for name in variants["chosen"]:
        key = name if name in VARIANTS else ""
        wanted[key] = wanted.get(key, 0) + 1
    stats = variants["stats"]
    assert stats["started_by_variant"] == wanted and stats["drafted"] > 0 and stats["accepted"] > 0, stats
