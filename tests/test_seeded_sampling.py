"""Seeds reproduce: keyed draws (standard mode) and coupled sampling, on the real tiny pair.

Coupled sampling's claim is an identity: for every policy and proposer, speculative output equals
target-only sampling with the same seed, token for token, at any temperature and warp. `auto` with
a clock that returns random times (so its draft lengths change from run to run) still gives the
same output. Standard mode's claims: the same seed gives the same output in another process, and
no draw's key is used twice in a generation (which is what makes keyed draws independent).
Planted bugs (a verifier keeping the draft token on a mismatch, a draft drawing on other noise,
a draft key without the round's start) must fail these checks.
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import time

import attrs
import pytest

from specdec import Decoder, TorchSampler, Verifier
from specdec.integrations.loading import load_model
from specdec.plugins import registry
from specdec.proposer import ProposalRequest
from specdec.samplers import Purpose, Site
from specdec.sampling import warp
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer
from tests.eagle_strategies import proposer_params
from tests.models import model_path, real_model
from tests.test_real_greedy_identity import spec_bench_prompts

TOKENS = 24
PROMPTS = ["Once upon a time", "The little dog"]
# (temperature, top_k, top_p): the plain distribution and both warps, at 0.7 and 1.0
SAMPLINGS = [(0.7, None, None), (1.0, None, None), (0.7, 20, None), (1.0, None, 0.9)]
NEEDS_OTHER_DRAFT = {"pacer"}  # its shipped pre-verifier reads the default draft's hidden states


def pairs() -> list[tuple[str, str]]:
    reg = registry()
    return [(p, q) for p in reg.names("policy") if p not in NEEDS_OTHER_DRAFT for q in reg.names("proposer")]


def decoder_for(policy: str, proposer: str, target=None, draft=None) -> Decoder:
    target = target or real_model("stories260K")
    uses_draft = registry().get("proposer", proposer).uses_draft_model
    return Decoder(target, proposer=proposer, policy=policy, draft=(draft or real_model("stories260K-draft")) if uses_draft else None,
                   proposer_params=proposer_params(proposer))


@functools.lru_cache(maxsize=None)
def target_only(prompt: str, sampling: tuple, seed: int, tokens: int = TOKENS, target: str = "stories260K") -> tuple[int, ...]:
    t, k, p = sampling
    return Decoder(real_model(target)).generate(prompt, tokens, temperature=t, top_k=k, top_p=p, seed=seed, coupled=True).ids


def coupled(decoder: Decoder, prompt: str, sampling: tuple, seed: int, tokens: int = TOKENS):
    t, k, p = sampling
    decoder.prepare(prompt, tokens)  # the oracle's reference (a no-op for every other policy)
    return decoder.generate(prompt, tokens, temperature=t, top_k=k, top_p=p, seed=seed, coupled=True)


def check_identity(policy: str, proposer: str, cases: list[tuple[str, tuple, int]]) -> None:
    decoder = decoder_for(policy, proposer)
    drafted = 0
    for prompt, sampling, seed in cases:
        result = coupled(decoder, prompt, sampling, seed)
        assert result.ids == target_only(prompt, sampling, seed), f"{sampling} seed {seed}"
        drafted += result.stats.drafted
    assert drafted > 0 or policy == "oracle"  # the identity was tested through drafts, not plain steps


@pytest.mark.parametrize("policy, proposer", pairs())
def test_coupled_sampling_is_target_only_sampling(policy, proposer):
    """Two cases per pair, one at each temperature, the warps taking turns across pairs."""
    j = pairs().index((policy, proposer))
    check_identity(policy, proposer, [(PROMPTS[j % 2], SAMPLINGS[(j + i) % 4], 100 + j) for i in (0, 1)])


@pytest.mark.slow
@pytest.mark.parametrize("policy, proposer", pairs())
def test_coupled_sampling_is_target_only_sampling_everywhere(policy, proposer):
    """Every sampling on both prompts, three seeds each."""
    check_identity(policy, proposer, [(prompt, s, seed) for prompt in PROMPTS for s in SAMPLINGS for seed in (1, 2, 3)])


class KeepsTheDraftOnAMismatch(Verifier):
    """Planted bug: after a rejection, emits the draft's token instead of the target's."""

    def verify(self, draft, target_logits, sampling, sampler, eos_token_ids=frozenset()):
        verdict = super().verify(draft, target_logits, sampling, sampler, eos_token_ids)
        if verdict.accepted < verdict.drafted and not verdict.eos:
            return attrs.evolve(verdict, tokens=verdict.tokens[:-1] + (draft.tokens[verdict.accepted],))
        return verdict


def test_the_identity_check_catches_a_verifier_keeping_rejected_tokens():
    decoder = Decoder(real_model("stories260K"), proposer=DraftModelProposer(real_model("stories260K-draft")), policy=FixedPolicy(4),
                      verifier=KeepsTheDraftOnAMismatch())
    assert coupled(decoder, PROMPTS[0], SAMPLINGS[1], 7).ids != target_only(PROMPTS[0], SAMPLINGS[1], 7)


class OtherNoise(ProposalRequest):
    """Planted bug: the draft draws on noise of another position than the target's."""

    def _sample(self, logits, who):
        q = warp(logits, self.sampling)
        start = len(self.context)
        return self.sampler.categorical(q, Site(start + len(self.tokens) + 10**6, Purpose.COUPLED, start)), None


class SelfDraft(DraftModelProposer):
    request_class = None

    def propose(self, request):
        if self.request_class is not None:
            request = self.request_class(**{f.alias: getattr(request, f.name) for f in attrs.fields(ProposalRequest) if f.init})
        return super().propose(request)


def self_speculation_acceptance(request_class=None) -> float:
    """Acceptance of coupled sampling with the target drafting for itself (q = p)."""
    proposer = SelfDraft(load_model(model_path("stories260K")))  # a second copy: one model per role
    proposer.request_class = request_class
    decoder = Decoder(real_model("stories260K"), proposer=proposer, policy=FixedPolicy(4))
    stats = coupled(decoder, PROMPTS[0], SAMPLINGS[1], 40, tokens=32).stats
    return stats.accepted / stats.drafted


def test_a_draft_equal_to_the_target_is_always_accepted_on_shared_noise():
    assert self_speculation_acceptance() > 0.97
    assert self_speculation_acceptance(OtherNoise) < 0.8  # the planted bug: the coupling is gone


def fake_clock(seed: int):
    """perf_counter with random steps: timings a loaded machine might show."""
    rng, now = random.Random(seed), [0.0]

    def clock() -> float:
        now[0] += rng.expovariate(1.0) * 10 ** rng.uniform(-4, -1)
        return now[0]

    return clock


def test_auto_with_random_timings_gives_the_same_coupled_output(monkeypatch):
    prompt, sampling, seed = PROMPTS[0], SAMPLINGS[0], 5
    outputs, lengths = [], []
    for clock_seed in range(3):
        monkeypatch.setattr(time, "perf_counter", fake_clock(clock_seed))
        decoder = decoder_for("auto", "draft")  # measure=True: draft lengths follow the clock
        result = coupled(decoder, prompt, sampling, seed, tokens=32)
        outputs.append(result.ids)
        lengths.append((result.stats.rounds, result.stats.drafted))
    assert len(set(lengths)) > 1, "the random clock did not change auto's drafts: the test has no power"
    assert outputs == [target_only(prompt, sampling, seed, 32)] * 3


def test_a_seed_alone_samples_coupled_and_no_seed_samples_standard(monkeypatch):
    """`generate(seed=...)` without `coupled` fixes the text: auto under a random clock gives
    target-only's output; without a seed the standard rule runs (its output differs from it)."""
    t, k, p = SAMPLINGS[0]
    outputs = []
    for clock_seed in range(2):
        monkeypatch.setattr(time, "perf_counter", fake_clock(clock_seed))
        outputs.append(decoder_for("auto", "draft").generate(PROMPTS[0], 32, temperature=t, top_k=k, top_p=p, seed=5).ids)
    assert outputs == [target_only(PROMPTS[0], SAMPLINGS[0], 5, 32)] * 2
    decoder = decoder_for("fixed", "draft")
    sampler = TorchSampler(5)  # a sampler without a seed argument: the standard rule
    standard = decoder.generate(PROMPTS[0], 32, temperature=t, top_k=k, top_p=p, sampler=sampler).ids
    assert standard != target_only(PROMPTS[0], SAMPLINGS[0], 5, 32)


class KeyRecorder(TorchSampler):
    """Records every standard draw's key (sequence, start, position, purpose)."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.keys: list[tuple[int, int, int, int]] = []

    def _uniform(self, site: Site) -> float:
        self.keys.append((self.sequence, site.start, site.position, int(site.purpose)))
        return super()._uniform(site)


class DraftKeyWithoutStart(KeyRecorder):
    """Planted bug: draft draws keyed by position alone (a rejected round's keys come back)."""

    def _uniform(self, site: Site) -> float:
        return super()._uniform(attrs.evolve(site, start=0) if site.purpose is Purpose.DRAFT else site)


@pytest.mark.parametrize("policy, proposer", [("fixed", "draft"), ("svip", "draft"), ("heuristic", "ouroboros")])
def test_no_key_is_used_twice_in_standard_sampling(policy, proposer):
    decoder = decoder_for(policy, proposer)
    sampler = KeyRecorder(3)
    for prompt in PROMPTS:
        decoder.generate(prompt, 40, temperature=1.0, sampler=sampler)
    assert len(sampler.keys) >= 60 and len(set(sampler.keys)) == len(sampler.keys)


def test_the_key_check_catches_draft_keys_without_the_round():
    sampler = DraftKeyWithoutStart(3)
    decoder_for("fixed", "draft").generate(PROMPTS[0], 40, temperature=1.0, sampler=sampler)
    assert len(set(sampler.keys)) < len(sampler.keys)


CHILD = """
import json, sys
from tests.test_seeded_sampling import decoder_for
runs = {}
for policy, proposer, mode in [("fixed", "draft", "standard"), ("svip", "ouroboros", "standard"),
                               ("heuristic", "prompt-lookup", "standard"), ("auto", "draft", "coupled")]:
    decoder = decoder_for(policy, proposer)
    runs[f"{policy}+{proposer} {mode}"] = list(decoder.generate("Once upon a time", 32, temperature=0.8, top_k=40, seed=11,
                                                                coupled=mode == "coupled").ids)
print(json.dumps(runs))
"""


def test_the_same_seed_gives_the_same_output_in_another_process():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    children = [subprocess.Popen([sys.executable, "-c", CHILD], cwd=root, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [json.loads(child.communicate(timeout=600)[0].strip().splitlines()[-1]) for child in children]
    assert all(child.returncode == 0 for child in children)
    assert outputs[0] == outputs[1]
    assert len({tuple(ids) for ids in outputs[0].values()}) > 1


REAL_TOKENS = 32


@functools.lru_cache(maxsize=None)
def real_target_only(i: int, sampling: tuple) -> tuple[int, ...]:
    """Target-only coupled sampling of Spec-Bench prompt `i` (seed i), shared by every configuration."""
    decoder = Decoder(real_model("smollm2-135m-instruct"))
    t, k, p = sampling
    ids = decoder.encode(spec_bench_prompts(10)[i], chat=True)
    return decoder.generate(ids, REAL_TOKENS, temperature=t, top_k=k, top_p=p, seed=i, coupled=True).ids


REAL_POLICIES = ["fixed", "svip", "adaedl", "pacer", "auto"]  # the tiny pair's test covers every registered one
REAL_SAMPLINGS = [(0.7, None, 0.9), (1.0, None, None)]  # prompt i samples with REAL_SAMPLINGS[i % 2]


@pytest.mark.slow
@pytest.mark.parametrize("proposer", ["draft", "prompt-lookup", "ouroboros"])
def test_coupled_sampling_is_target_only_sampling_on_the_default_pair(proposer):
    """10 Spec-Bench prompts (chat template) per policy and proposer, half at T = 0.7 with top-p 0.9
    and half at T = 1.0."""
    target = real_model("smollm2-135m-instruct")
    draft = real_model("smollm2-draft") if registry().get("proposer", proposer).uses_draft_model else None
    for policy in REAL_POLICIES:
        decoder = Decoder(target, proposer=proposer, policy=policy, draft=draft)
        drafted = 0
        for i, prompt in enumerate(spec_bench_prompts(10)):
            t, k, p = REAL_SAMPLINGS[i % 2]
            ids = decoder.encode(prompt, chat=True)
            result = decoder.generate(ids, REAL_TOKENS, temperature=t, top_k=k, top_p=p, seed=i, coupled=True)
            assert result.ids == real_target_only(i, REAL_SAMPLINGS[i % 2]), f"{policy}+{proposer} prompt {i} at T={t}"
            drafted += result.stats.drafted
        assert drafted > 0, f"{policy}+{proposer} never drafted"
