"""Benchmark method strings build the decoders they name, and every method decodes the target's greedy output."""

from __future__ import annotations

import pytest

from specdec.bench.spec import build_method
from specdec.errors import ConfigurationError
from tests.models import real_model

pytestmark = pytest.mark.slow

METHODS = ["fixed:k=2", "auto+draft:int8=true", "svip+prompt-lookup", "hf-greedy", "hf-assisted-k2", "hf-assisted-k2-int8", "hf-prompt-lookup"]


@pytest.fixture(scope="module")
def pair():
    return real_model("stories260K"), real_model("stories260K-draft")


def test_every_method_decodes_the_targets_greedy_output(pair):
    target, draft = pair
    ids = target.codec.encode("Once upon a time, there was a little girl")
    reference = build_method("target-only", target, lambda: draft).run(ids, 24, 0.0, 0).ids
    for spec in METHODS:
        run = build_method(spec, target, lambda: draft).run(ids, 24, 0.0, 0)
        assert run.ids == reference, spec


def test_int8_methods_get_a_quantized_draft(pair):
    target, draft = pair
    method = build_method("hf-assisted-k2-int8", target, lambda: draft)
    assert any("quantized" in type(m).__module__ for m in method.assistant.modules())
    plain = build_method("hf-assisted-k2", target, lambda: draft)
    assert not any("quantized" in type(m).__module__ for m in plain.assistant.modules())


@pytest.mark.parametrize("spec", ["hf-nonsense", "hf-assisted-kx-int8", "fixed:k", "target-only#", "#control"])
def test_unknown_or_malformed_methods_are_refused(pair, spec):
    target, draft = pair
    with pytest.raises(ConfigurationError):
        build_method(spec, target, lambda: draft)


def test_fastest_repeat_speedup_times_each_prompt_by_its_fastest_run():
    """A stall in one repeat (here 9 s instead of 1 s) sways the pooled speedup, not this one."""
    from specdec.bench.methods import MethodRun
    from specdec.bench.runner import Record, summarize

    def record(method, question, repeat, seconds):
        return Record(method, "c", question, repeat, 5, MethodRun(ids=(1,) * 4, seconds=seconds))

    records = [
        record("base", 1, 0, 2.0), record("base", 1, 1, 2.2), record("base", 2, 0, 4.0), record("base", 2, 1, 3.0),
        record("fast", 1, 0, 9.0), record("fast", 1, 1, 1.0), record("fast", 2, 0, 1.5), record("fast", 2, 1, 2.0),
    ]
    by_method = {s.method: s for s in summarize(records, "base") if s.category == "c"}
    assert by_method["fast"].fastest_repeat_speedup == pytest.approx((2.0 + 3.0) / (1.0 + 1.5))
    assert by_method["fast"].speedup == pytest.approx((2.0 + 2.2 + 4.0 + 3.0) / (9.0 + 1.0 + 1.5 + 2.0))
    assert by_method["base"].fastest_repeat_speedup == pytest.approx(1.0)


def test_method_order_rotates_from_prompt_to_prompt():
    """No method always runs first (or right after the same one): position effects are shared."""
    from specdec.bench.methods import MethodRun
    from specdec.bench.prompts import BenchPrompt
    from specdec.bench.runner import run_benchmark

    calls: list[str] = []

    class Recording:
        def __init__(self, name: str) -> None:
            self.name = name

        def run(self, ids, max_new_tokens, temperature, seed) -> MethodRun:
            calls.append(self.name)
            return MethodRun(ids=(1,), seconds=1.0)

    methods = [Recording(name) for name in "abc"]
    prompts = [BenchPrompt("c", i, "x") for i in range(3)]
    records = run_benchmark(methods, prompts, lambda text: [1], max_new_tokens=4, repeats=2, warmup=0, progress=False)
    assert len(records) == 18
    firsts = [calls[i] for i in range(0, 18, 3)]
    assert sorted(firsts) == ["a", "a", "b", "b", "c", "c"]
    for start in range(0, 18, 3):
        assert sorted(calls[start : start + 3]) == ["a", "b", "c"]


@pytest.mark.parametrize("spec, tokens", [("hf-assisted-k2", 2), ("hf-assisted-k5-int8", 5), ("hf-assisted", 20)])
def test_hf_assisted_options_reach_the_assistant_and_are_restored(pair, spec, tokens):
    """transformers reads them from the assistant's own generation config, not from generate()."""
    target, draft = pair
    method = build_method(spec, target, lambda: draft)
    before = method.assistant.generation_config.to_dict()
    seen: list[int] = []
    hook = method.assistant.register_forward_hook(lambda module, args, out: seen.append(module.generation_config.num_assistant_tokens))
    try:
        method.run(target.codec.encode("Once upon a time"), 12, 0.0, 0)
    finally:
        hook.remove()
    assert seen and set(seen) == {tokens}
    assert method.assistant.generation_config.to_dict() == before


def test_a_policy_that_times_itself_reports_its_share_of_the_run(pair):
    """PACER's pre-verifier time is reported on its own (bench column "policy"), inside the overhead."""
    import math

    from specdec import Decoder
    from specdec.bench.methods import SpecdecMethod
    from specdec.strategies.policies.pacer.network import PacerConfig, PreVerifier
    from specdec.strategies.policies.pacer import PacerPolicy
    from specdec.strategies.proposers import DraftModelProposer

    target, draft = pair
    ids = target.codec.encode("Once upon a time")
    network = PreVerifier.random(PacerConfig(hidden_size=64, width=8), seed=0)
    policy = PacerPolicy.from_verifier(network, threshold=0.0, max_draft=3)
    run = SpecdecMethod("pacer", Decoder(target, proposer=DraftModelProposer(draft), policy=policy)).run(ids, 16, 0.0, 0)
    assert run.drafted > 0 and 0 < run.policy_seconds <= run.overhead_seconds
    assert math.isnan(build_method("fixed:k=2", target, lambda: draft).run(ids, 16, 0.0, 0).policy_seconds)


def test_a_labelled_method_is_the_same_method_under_another_name(pair):
    """`target-only#control`: an A/A control whose speedup over target-only is the run's noise."""
    target, draft = pair
    ids = target.codec.encode("Once upon a time")
    control = build_method("target-only#control", target, lambda: draft)
    labelled = build_method("fixed:k=2+draft#b", target, lambda: draft)
    assert control.name == "target-only#control" and control.decoder.proposer is None
    assert labelled.name == "fixed:k=2+draft#b" and labelled.decoder.policy.k == 2
    reference = build_method("target-only", target, lambda: draft).run(ids, 12, 0.0, 0).ids
    assert control.run(ids, 12, 0.0, 0).ids == reference == labelled.run(ids, 12, 0.0, 0).ids


def test_a_coupled_method_samples_what_target_only_coupled_samples(pair):
    """`fixed:k=2@coupled`: coupled sampling, whose output is target-only coupled sampling's."""
    target, draft = pair
    ids = target.codec.encode("Once upon a time")
    method = build_method("fixed:k=2@coupled#c", target, lambda: draft)
    baseline = build_method("target-only@coupled", target, lambda: draft)
    assert method.name == "fixed:k=2@coupled#c" and method.coupled and baseline.coupled
    run = method.run(ids, 24, 0.8, 3)
    assert run.drafted > 0 and run.ids == baseline.run(ids, 24, 0.8, 3).ids
    with pytest.raises(ConfigurationError):
        build_method("hf-assisted-k2@coupled", target, lambda: draft)


def test_the_cpu_model_is_read_from_cpuinfo(tmp_path):
    from specdec.machine import cpu_model

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n")
    assert cpu_model(info) == "AMD EPYC"
    assert cpu_model(tmp_path / "missing")  # falls back to the platform's description
