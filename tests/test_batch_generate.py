"""`Decoder.generate(list)` on the tiny pair: every row is what decoding its prompt alone gives.

Eight prompts of different lengths, each with its own `max_new_tokens`, the period as the end
token so that some rows end on it and others at their length; greedy rows equal target-only
greedy decoding token for token under every proposer (draft model, prompt lookup, Ouroboros) and
policy (fixed, svip, PACER, auto), with all prompts in flight and with fewer rows than prompts
(continuous batching), on the lean forward and on transformers' own (rows verified in turn).
Sampled rows with a seed equal the prompt decoded alone as sequence i of that seed, under coupled
and standard sampling. Bad batch arguments are one-line errors. The default pair's greedy batch of
16 Spec-Bench prompts, under the same policies and proposers, is in the slow tier.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from specdec import Decoder
from specdec.errors import ConfigurationError, InputError
from specdec.plugins import registry
from specdec.samplers import TorchSampler
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.policies.pacer.drafts import draft_fingerprint
from specdec.strategies.policies.pacer.network import PacerConfig, PreVerifier
from specdec.strategies.proposers import DraftModelProposer
from specdec.integrations.hf import TransformersStack
from tests.eagle_strategies import proposer_params
from tests.models import model_path, real_model

PROMPTS = [
    "Once upon a time",
    "The little dog",
    "Lily wanted to go to the park, but her mom said",
    "One day, a big",
    "Tom and Sue went to the park and saw",
    "The sun",
    "A cat sat on the mat and looked at the bird. The bird",
    "Mom said",
]
MAX_NEW = [40, 12, 64, 25, 33, 8, 50, 20]
POLICIES = ["fixed", "svip", "pacer", "auto"]
PROPOSERS = ["draft", "prompt-lookup", "ouroboros"]


def period() -> int:
    """The tiny target's '.' token: the end token of these tests, so that rows end early."""
    return real_model("stories260K").codec.encode("a.")[-1]


@pytest.fixture(scope="module")
def pacer_path(tmp_path_factory) -> str:
    """A random PACER pre-verifier for the tiny draft (its shipped one reads the default draft)."""
    draft = real_model("stories260K-draft")
    path = tmp_path_factory.mktemp("pacer")
    config = PacerConfig(hidden_size=64, width=8, draft_name="stories260K-draft", draft_fingerprint=draft_fingerprint(draft))
    PreVerifier.random(config, seed=3).save_pretrained(path)
    return str(path)


def decoder(policy: str, proposer: str, pacer_path: str) -> Decoder:
    uses_draft = registry().get("proposer", proposer).uses_draft_model
    return Decoder(
        real_model("stories260K"), proposer=proposer, policy=policy, draft=real_model("stories260K-draft") if uses_draft else None,
        policy_params={"path": pacer_path, "threshold": 0.3} if policy == "pacer" else None, proposer_params=proposer_params(proposer),
    )


@functools.lru_cache(maxsize=None)
def alone(index: int) -> tuple[tuple[int, ...], str]:
    """Target-only decoding of prompt `index` on its own: its ids and why it ended."""
    result = Decoder(real_model("stories260K")).generate(PROMPTS[index], MAX_NEW[index], eos_token_id=period())
    return result.ids, result.finish_reason


@pytest.mark.parametrize("proposer", PROPOSERS)
@pytest.mark.parametrize("policy", POLICIES)
def test_a_greedy_batch_equals_each_prompt_alone(policy, proposer, pacer_path):
    results = decoder(policy, proposer, pacer_path).generate(PROMPTS, MAX_NEW, eos_token_id=period())
    assert [(r.ids, r.finish_reason) for r in results] == [alone(i) for i in range(len(PROMPTS))]
    assert {r.finish_reason for r in results} == {"eos", "length"}  # rows end at different rounds
    assert sum(r.stats.drafted for r in results) > 0
    for r in results:  # statistics per row
        assert r.stats.generated == len(r.ids) and r.stats.target_forwards == r.stats.rounds


@pytest.mark.parametrize("policy, proposer", [("auto", "draft"), ("svip", "ouroboros"), ("fixed", "prompt-lookup"), ("fixed", "eagle")])
def test_fewer_rows_than_prompts_take_turns(policy, proposer, pacer_path):
    d = decoder(policy, proposer, pacer_path)
    for rows in (1, 3):
        results = d.generate(PROMPTS, MAX_NEW, eos_token_id=period(), batch_size=rows)
        assert [(r.ids, r.finish_reason) for r in results] == [alone(i) for i in range(len(PROMPTS))], f"batch_size={rows}"


def test_rows_end_on_their_own_stop_strings():
    stop = ["park", "big"]
    results = decoder("svip", "draft", "").generate(PROMPTS, MAX_NEW, stop=stop, batch_size=3)
    expected = [Decoder(real_model("stories260K")).generate(p, n, stop=stop) for p, n in zip(PROMPTS, MAX_NEW)]
    assert [(r.text, r.finish_reason) for r in results] == [(e.text, e.finish_reason) for e in expected]
    assert {r.finish_reason for r in results} == {"stop", "length"}


def test_transformers_own_forward_verifies_rows_one_after_another_and_stays_exact():
    """A target on transformers' stack (any architecture the lean forward does not run) runs
    `forward_rows` row by row, each row with a cache of its own."""
    from specdec.integrations.loading import load_model

    target = load_model(model_path("stories260K"), lean=False)
    assert isinstance(target.stack, TransformersStack)
    d = Decoder(target, proposer="ouroboros", policy="svip", draft=real_model("stories260K-draft"))
    results = d.generate(PROMPTS, MAX_NEW, eos_token_id=period(), batch_size=3)
    assert [(r.ids, r.finish_reason) for r in results] == [alone(i) for i in range(len(PROMPTS))]
    assert sum(r.stats.branch_offered for r in results) > 0  # token trees went through the row caches too


def test_a_target_only_batch_and_its_stream():
    d = Decoder(real_model("stories260K"))
    streamed: dict[int, list[int]] = {}
    for index, tokens in d.stream(PROMPTS, MAX_NEW, eos_token_id=period(), batch_size=5):
        streamed.setdefault(index, []).extend(tokens)
    assert [tuple(streamed[i]) for i in range(len(PROMPTS))] == [alone(i)[0] for i in range(len(PROMPTS))]
    assert [r.ids for r in d.last_results] == [alone(i)[0] for i in range(len(PROMPTS))]
    single = d.generate(PROMPTS[2], MAX_NEW[2], eos_token_id=period())  # one prompt: one result, as before
    assert single.ids == alone(2)[0]


@pytest.mark.parametrize("policy, proposer", [("fixed", "draft"), ("svip", "ouroboros")])
def test_a_seeded_batch_samples_each_row_as_its_sequence_of_the_seed(policy, proposer, pacer_path):
    """Coupled (a seed's default): row i is target-only sampling of its prompt as sequence i of the
    seed. Standard: row i is the same strategies decoding the prompt alone with that sampler (its
    text then depends on the drafts: policies that time themselves, as auto does, are left out)."""
    for coupled in (True, False):
        options = dict(temperature=0.9, top_p=0.95, coupled=coupled)
        results = decoder(policy, proposer, pacer_path).generate(PROMPTS, MAX_NEW, seed=11, **options)
        for i, result in enumerate(results):
            reference = Decoder(real_model("stories260K")) if coupled else decoder(policy, proposer, pacer_path)
            expected = reference.generate(PROMPTS[i], MAX_NEW[i], sampler=TorchSampler(11, sequence=i), **options)
            assert result.ids == expected.ids, f"row {i}, coupled={coupled}"
        first = decoder(policy, proposer, pacer_path).generate(PROMPTS[0], MAX_NEW[0], seed=11, **options)
        assert first.ids == results[0].ids  # a call with one prompt is sequence 0


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "prompts, options, error, says",
    [
        ([], {}, InputError, r"^no prompts: the list of prompts is empty$"),
        (["Once upon a time", 5], {}, InputError, r"^prompt 1 of the list is not a prompt \(text, chat messages or token ids\): int 5$"),
        (["Once upon a time", None], {}, InputError, r"^prompt 1 of the list is not a prompt"),
        (["Once upon a time", ""], {}, InputError, r"^prompt 1 of the list: the prompt is empty$"),
        (PROMPTS, {"batch_size": 0}, InputError, r"^batch_size must be an integer >= 1, got 0$"),
        (PROMPTS, {"batch_size": -2}, InputError, r"^batch_size must be an integer >= 1, got -2$"),
        (PROMPTS, {"batch_size": 2.5}, InputError, r"^batch_size must be an integer >= 1, got 2.5$"),
        (PROMPTS, {"batch_size": True}, InputError, r"^batch_size must be an integer >= 1, got True$"),
        (PROMPTS[:2], {"max_new_tokens": [4, 5, 6]}, InputError, r"^max_new_tokens holds 3 values for 2 prompts"),
        (PROMPTS[:2], {"sampler": TorchSampler(1)}, ConfigurationError, r"^a batch takes sampler= as a list of 2 samplers, one per prompt$"),
        (PROMPTS[:2], {"input_ids": [1, 2]}, InputError, r"^a list of prompts holds the prompts"),
    ],
)
def test_bad_batch_arguments_are_one_line_errors(prompts, options, error, says):
    with pytest.raises(error, match=says) as raised:
        Decoder(real_model("stories260K")).generate(prompts, **{"max_new_tokens": 4, **options})
    assert "\n" not in str(raised.value)


def test_strategy_objects_need_names_or_a_factory_for_a_batch():
    target, draft = real_model("stories260K"), real_model("stories260K-draft")
    d = Decoder(target, proposer=DraftModelProposer(draft), policy=FixedPolicy(3))
    with pytest.raises(ConfigurationError, match=r"^a batch runs a policy and proposer per row: give them by name .* or pass strategies="):
        d.generate(PROMPTS[:3], 4)
    assert d.generate(PROMPTS[:3], 4, batch_size=1)[2].ids == alone_ids(2, 4)  # one row at a time needs no copies
    made = Decoder(target, strategies=lambda: (FixedPolicy(3), DraftModelProposer(draft.sibling())))
    assert [r.ids for r in made.generate(PROMPTS[:3], 4)] == [alone_ids(i, 4) for i in range(3)]
    with pytest.raises(ConfigurationError, match=r"^strategies= builds the policy and proposer: drop policy="):
        Decoder(target, policy="fixed", strategies=lambda: (FixedPolicy(3), None))


def alone_ids(index: int, tokens: int) -> tuple[int, ...]:
    return Decoder(real_model("stories260K")).generate(PROMPTS[index], tokens).ids


def test_a_short_row_beside_a_long_one_reads_no_unwritten_cache_entry(monkeypatch):
    """In a ragged forward a short row's mask hides the slots up to the longest row's end, but
    attention still multiplies them by their weight 0: slots no forward wrote must hold zeros,
    not whatever memory they were given (0 * NaN is NaN). New memory is NaN here."""
    from specdec.integrations.lean_llama import LeanLlama, RowFeed

    real_new_empty = torch.Tensor.new_empty
    monkeypatch.setattr(torch.Tensor, "new_empty", lambda self, *args, **kw: real_new_empty(self, *args, **kw).fill_(math.nan))
    stack = LeanLlama(real_model("stories260K").model)
    stack.run_rows([RowFeed(0, list(range(3, 253)), 0), RowFeed(1, [5, 6, 7, 8, 9], 0)])  # row 1's padding: slots 5..249
    rounds = [
        [RowFeed(0, [7], 250), RowFeed(1, [9], 5)],  # row 1's slot 250 was never written
        [RowFeed(0, [8], 251), RowFeed(2, [9, 10], 0)],  # a new row: none of its slots were
    ]
    for feeds in rounds:
        out = stack.run_rows(feeds)
        assert all(torch.isfinite(last).all() for last, _ in out)


@functools.lru_cache(maxsize=1)
def default_pair_batch() -> tuple[list[list[int]], list[int], list[int], list[tuple[tuple[int, ...], str]]]:
    """16 Spec-Bench prompts of the default pair (categories mixed, so of many lengths), a length
    each, the end tokens (its own and '.', so that rows end on them at different rounds), and
    each prompt's target-only greedy decoding alone (ids, finish reason)."""
    from tests.test_real_greedy_identity import spec_bench_prompts

    target = real_model("smollm2-135m-instruct")
    plain = Decoder(target)
    prompts = [plain.encode(p, chat=True) for p in spec_bench_prompts(16)]
    lengths = [48, 24, 64, 32, 40, 16, 56, 20, 64, 36, 28, 44, 60, 12, 52, 30]
    ends = sorted(target.eos_token_ids | {target.codec.encode("a.")[-1]})
    alone = [plain.generate(p, n, eos_token_id=ends) for p, n in zip(prompts, lengths)]
    return prompts, lengths, ends, [(r.ids, r.finish_reason) for r in alone]


@pytest.mark.slow
@pytest.mark.parametrize("proposer", PROPOSERS)
@pytest.mark.parametrize("policy", POLICIES)
def test_a_greedy_batch_of_16_on_the_default_pair_equals_each_prompt_alone(policy, proposer):
    prompts, lengths, ends, expected = default_pair_batch()
    assert {reason for _, reason in expected} == {"eos", "length"}
    uses_draft = registry().get("proposer", proposer).uses_draft_model
    d = Decoder(real_model("smollm2-135m-instruct"), proposer=proposer, policy=policy,
                draft=real_model("smollm2-draft") if uses_draft else None)
    results = d.generate(prompts, lengths, eos_token_id=ends, batch_size=16)
    assert [(r.ids, r.finish_reason) for r in results] == expected
    assert sum(r.stats.drafted for r in results) > 0


@pytest.mark.parametrize("proposer, proposer_params", [("draft", None), ("draft", {"head_tokens": 200}), ("ouroboros", None)])
def test_rows_draft_together_in_one_draft_forward_per_step(proposer, proposer_params):
    """Each row drafts on its own row of the draft model (a trimmed head is one view shared by the
    rows), so a step's draft forwards are one forward: far fewer draft-model calls than the rows'
    own draft forwards, with every row still what it is alone."""
    from specdec.integrations.loading import load_model

    draft = load_model(model_path("stories260K-draft"))  # its own copy: its counter is this test's
    d = Decoder(real_model("stories260K"), proposer=proposer, policy="fixed", draft=draft, proposer_params=proposer_params)
    results = d.generate(PROMPTS, MAX_NEW, eos_token_id=period())
    assert [(r.ids, r.finish_reason) for r in results] == [alone(i) for i in range(len(PROMPTS))]
    model = d._row_strategies[0][1].model.batch  # the draft, or the view its rows share
    assert (model is draft) == (proposer_params is None)
    row_forwards = sum(r.stats.draft_forwards for r in results)
    assert row_forwards > 0 and model.forwards <= row_forwards / 3
