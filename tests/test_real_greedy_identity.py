"""Greedy speculative output is token-for-token the target's own `generate(do_sample=False)`."""

from __future__ import annotations

import json

import pytest
import torch

from specdec import Decoder
from specdec.defaults import models_dir
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer
from tests.models import real_model

pytestmark = pytest.mark.slow

NEW_TOKENS = 64


def spec_bench_prompts(n: int) -> list[str]:
    """The first `n` Spec-Bench first turns, spread over categories."""
    rows = [json.loads(line) for line in open(models_dir().parent / "data" / "spec_bench.jsonl")]
    by_category: dict[str, list[str]] = {}
    for row in rows:
        by_category.setdefault(row["category"], []).append(row["turns"][0])
    prompts: list[str] = []
    while len(prompts) < n:
        for texts in by_category.values():
            if texts and len(prompts) < n:
                prompts.append(texts.pop(0))
    return prompts


def hf_greedy(model, ids: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        out = model.model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=2)
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("k", [2, 5])
def test_default_pair_greedy_matches_transformers_generate(k):
    target = real_model("smollm2-135m-instruct")
    decoder = Decoder(target, proposer=DraftModelProposer(real_model("smollm2-draft")), policy=FixedPolicy(k))
    for prompt in spec_bench_prompts(10 if k == 5 else 4):
        ids = decoder.encode(prompt, chat=True)
        expected = hf_greedy(target, ids, NEW_TOKENS)
        got = list(decoder.generate(ids, NEW_TOKENS).ids)
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
        assert got == expected, f"first divergence at token {first} for prompt {prompt[:60]!r}"


def test_tiny_pair_greedy_matches_transformers_generate():
    target = real_model("stories260K")
    decoder = Decoder(target, proposer=DraftModelProposer(real_model("stories260K-draft")), policy=FixedPolicy(4))
    for prompt in ["Once upon a time", "The little dog", "Lily wanted to"]:
        ids = decoder.encode(prompt)
        assert list(decoder.generate(ids, 64).ids) == hf_greedy(target, ids, 64)


@pytest.mark.parametrize("head_tokens", [128, 300])
def test_trimmed_draft_head_keeps_greedy_output_exact(head_tokens):
    target = real_model("stories260K")
    proposer = DraftModelProposer(real_model("stories260K-draft"), head_tokens=head_tokens)
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(3))
    for prompt in ["Once upon a time", "The little dog"]:
        ids = decoder.encode(prompt)
        result = decoder.generate(ids, 48)
        assert list(result.ids) == hf_greedy(target, ids, 48)
        # drafts only ever come from the kept subset
        assert proposer.model.name.endswith(f"[head {len(proposer.model._head_ids)}]")


def emitted_tokens(target, count: int) -> list[int]:
    """The `count` tokens the target emits most often, from its own greedy continuations of prompts
    other than the test's: a head that drafts what the target says (on the tiny pair, the lowest
    ids are byte tokens it never emits, so a head by id would only ever be rejected)."""
    counts: dict[int, int] = {}
    decoder = Decoder(target)
    for prompt in ["One day", "Tom and Sue", "The sun was", "Once there was a cat", "She liked to play"]:
        for token in decoder.generate(prompt, 64).ids:
            counts[token] = counts.get(token, 0) + 1
    return sorted(counts, key=lambda t: (-counts[t], t))[:count]


@pytest.mark.parametrize("count", [32, 96])
def test_a_head_of_emitted_tokens_accepts_drafts_and_stays_exact(count):
    target = real_model("stories260K")
    head = emitted_tokens(target, count)
    proposer = DraftModelProposer(real_model("stories260K-draft").with_head_subset(head))
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(3))
    accepted = 0
    for prompt in ["Once upon a time", "The little dog"]:
        ids = decoder.encode(prompt)
        result = decoder.generate(ids, 48)
        assert list(result.ids) == hf_greedy(target, ids, 48)
        assert set(proposer.model._head_ids.tolist()) == set(head)
        accepted += result.stats.accepted
    assert accepted > 0, "the trimmed head's drafts were never accepted: only the reject path ran"


def test_trimmed_head_on_the_default_pair_is_exact():
    target = real_model("smollm2-135m-instruct")
    decoder = Decoder(target, proposer=DraftModelProposer(real_model("smollm2-draft"), head_tokens=16384), policy=FixedPolicy(3))
    for prompt in spec_bench_prompts(2):
        ids = decoder.encode(prompt, chat=True)
        assert list(decoder.generate(ids, NEW_TOKENS).ids) == hf_greedy(target, ids, NEW_TOKENS)


@pytest.mark.parametrize("head_tokens", [None, 16384])
def test_int8_draft_on_the_default_pair_is_exact(head_tokens):
    target = real_model("smollm2-135m-instruct")
    proposer = DraftModelProposer(real_model("smollm2-draft"), head_tokens=head_tokens, int8=True)
    assert any("quantized" in type(m).__module__ for m in proposer.model.model.modules())
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(3))
    for prompt in spec_bench_prompts(2):
        ids = decoder.encode(prompt, chat=True)
        result = decoder.generate(ids, NEW_TOKENS)
        assert list(result.ids) == hf_greedy(target, ids, NEW_TOKENS)
        assert result.stats.accepted > 0  # the int8 draft still proposes what the target says


def test_draft_context_window_reads_only_the_prompt_tail_and_stays_exact():
    target = real_model("stories260K")
    proposer = DraftModelProposer(real_model("stories260K-draft"), context_window=4)
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(3))
    for prompt in ["Once upon a time, there was a little girl named Lily who", "The little dog ran to the park and"]:
        ids = decoder.encode(prompt)
        result = decoder.generate(ids, 48)
        assert list(result.ids) == hf_greedy(target, ids, 48)
        # the draft's cache starts at the prompt's last 4 tokens and follows the output from there
        assert proposer._cache.ids[:4] == list(ids[-4:])
        assert proposer._cache.ids[4:8] == list(result.ids[:4])
        assert result.stats.accepted > 0
