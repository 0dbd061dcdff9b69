"""What each dtype guarantees (docs/limits.md), tested.

- The lean forward in bfloat16 and float16 is transformers' forward bit for bit (same roundings in
  the same order), so half precision changes nothing about which forward runs.
- The output distribution stays exact: the exact enumeration on toy tables whose logits are
  bfloat16 numbers, and the chi-square tests of the real tiny pair loaded in bfloat16.
- Greedy identity with target-only holds token for token in float32 only. In bfloat16 a verify
  forward of k + 1 tokens rounds differently from k + 1 one-token steps, so greedy speculative
  output can part from greedy target-only, and only where the target's two best tokens are tied
  within that rounding: `greedy_partings` measures it on the default pair.
"""

from __future__ import annotations

import itertools
import math
from contextlib import contextmanager
from typing import Iterator

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from specdec import Decoder
from specdec.integrations.hf import HFModel
from specdec.integrations.lean_llama import LeanLlama
from specdec.integrations.loading import load_model
from specdec.integrations.toy import ToyModel
from specdec.sampling import SamplingConfig, checked_max
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer
from specdec.testing import LosslessCase, ToyPair, assert_case_lossless
from tests.models import model_path
from tests.test_real_greedy_identity import spec_bench_prompts
from tests.test_real_sampling_statistics import ALPHA, PROMPT, chi_square_pvalue, exact_first_two
from tests.test_real_sampling_statistics import draw as draw_samples
from tests.toy_strategies import PROPOSER_STRATEGIES, lossless_cases


@pytest.fixture
def one_thread():
    """torch's half-precision CPU GEMMs with several threads on a busy machine wait on each other
    (a 1536x576 product: 8 ms with 2 threads, 0.1 ms with 1): the real-model tests here run on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---------------------------------------------------------------------------- the lean forward in half precision
def forwards(model: HFModel) -> list[torch.Tensor]:
    """Logits and hidden states of a prompt, one-token and many-token steps, a crop, a token tree
    and a compaction: every way the decoder feeds a model."""
    generator = torch.Generator().manual_seed(0)
    model.reset()
    prompt = torch.randint(3, model.vocab_size, (60,), generator=generator).tolist()
    out = [model.forward(prompt, keep=3, hidden=True)]
    for n in (1, 2, 5):
        out.append(model.forward(torch.randint(3, model.vocab_size, (n,), generator=generator).tolist(), keep=n, hidden=True))
    model.crop(62)
    out.append(model.forward_tree([11, 12, 13, 14, 15], [-1, 0, -1, 2, 3], keep=5, hidden=True))
    model.compact(63, [64, 65])
    out.append(model.forward([21, 22, 23], keep=3, hidden=True))
    model.reset()
    return [t for o in out for t in (o.logits, o.hidden)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["stories260K", pytest.param("smollm2-draft", marks=pytest.mark.slow)])
def test_the_lean_forward_in_half_precision_is_transformers_bit_for_bit(name, dtype, one_thread):
    """float16 is not offered on a CPU by `load_model`, but a transformers model loaded in it runs as it is."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path(name), dtype=dtype)
    lean, plain = HFModel(model), HFModel(model, lean=False)
    assert isinstance(lean.stack, LeanLlama) and not isinstance(plain.stack, LeanLlama)
    for a, b in zip(forwards(lean), forwards(plain), strict=True):
        assert torch.equal(a, b), (a - b).abs().max()


# ---------------------------------------------------------------------------- exact enumeration on bfloat16 logits
def rounded(model: ToyModel, dtype: torch.dtype) -> ToyModel:
    """The toy model with every logit rounded to `dtype` (exact ties become likelier)."""
    contexts = [key for n in range(model.order + 1) for key in itertools.product(range(model.vocab_size), repeat=n)]
    table = {key: model.row(list(key)).to(dtype).double().tolist() for key in contexts}
    return ToyModel(table, model.vocab_size, order=model.order, eos_token_ids=model.eos_token_ids, name=model.name)


@st.composite
def rounded_cases(draw, policy_name: str, proposer_name: str, dtype: torch.dtype) -> LosslessCase:
    case = draw(lossless_cases(policy_name, proposer_name))
    pair = ToyPair(rounded(case.pair.target, dtype), rounded(case.pair.draft, dtype), case.pair.vocab, case.pair.eos)
    make_proposer = draw(PROPOSER_STRATEGIES[proposer_name](pair))
    return LosslessCase(pair, case.prompt, case.max_new_tokens, case.sampling, case.policy, make_proposer)


@pytest.mark.parametrize("policy_name, proposer_name", [("fixed", "draft"), ("svip", "draft"), ("auto", "ouroboros"), ("fixed", "prompt-lookup")])
def test_the_output_distribution_is_exact_on_bfloat16_logits(policy_name, proposer_name):
    @settings(deadline=None)
    @given(case=rounded_cases(policy_name, proposer_name, torch.bfloat16))
    def check(case: LosslessCase) -> None:
        assert_case_lossless(case)

    check()


@pytest.mark.exhaustive
@pytest.mark.parametrize("sampling", [SamplingConfig(1.0), SamplingConfig(0.8, top_k=20)], ids=["T1", "T0.8-top20"])
def test_sampling_in_bfloat16_follows_the_target(sampling, one_thread):
    """The chi-square test of `test_real_sampling_statistics` on the tiny pair loaded in bfloat16:
    the first two tokens against the target's exact joint distribution, computed in bfloat16."""
    target = load_model(model_path("stories260K"), dtype="bfloat16")
    draft = load_model(model_path("stories260K-draft"), dtype="bfloat16")
    decoder = Decoder(target, proposer=DraftModelProposer(draft), policy=FixedPolicy(2))
    ids = decoder.encode(PROMPT)
    pvalue = chi_square_pvalue(draw_samples(decoder, ids, sampling), exact_first_two(target, ids, sampling))
    assert pvalue > ALPHA, f"chi-square rejects the target distribution in bfloat16 (p = {pvalue:.2g})"


# ---------------------------------------------------------------------------- greedy identity and near-ties
@contextmanager
def decided_rows(model: HFModel) -> Iterator[dict[int, torch.Tensor]]:
    """Record, for every absolute position, the target's logits row that decided its token: the
    last forward with a row for that position (a later round only re-scores positions past
    everything emitted before it, so the row that emitted a token is the last one written)."""
    rows: dict[int, torch.Tensor] = {}
    forward = model.forward

    def recording(tokens, *, keep=1, hidden=False):
        first = model.cached_length + len(tokens) - keep + 1  # the position the first kept row predicts
        out = forward(tokens, keep=keep, hidden=hidden)
        rows.update((first + j, out.logits[j]) for j in range(keep))
        return out

    model.forward = recording  # this instance only (the decoder's cache calls model.forward)
    try:
        yield rows
    finally:
        del model.forward


@attrs.frozen
class Parting:
    """Where greedy speculative output first differs from greedy target-only."""

    index: int  # in the generated ids
    rounding: float  # max |verify row - step row| over the vocabulary there
    step_gap: float  # step[target-only's token] - step[speculative's token] (>= 0)
    verify_gap: float  # verify[speculative's token] - verify[target-only's token] (>= 0)


def ulp(row: torch.Tensor, dtype: torch.dtype) -> float:
    """The spacing of `dtype` numbers at the row's largest logit."""
    return torch.finfo(dtype).eps * 2.0 ** math.floor(math.log2(float(row.abs().max())))


def greedy_partings(target: HFModel, speculative: Decoder, prompts: list[str], tokens: int) -> tuple[list[Parting], list[float]]:
    """(partings, rounding in ulps at every compared position) of greedy speculative decoding
    against greedy target-only, prompt by prompt, up to and including the first parting.

    At every compared position each run emits the argmax of the row that decided it (asserted),
    so a parting is the two rows' argmaxes differing, nothing else."""
    dtype = next(target.model.parameters()).dtype
    plain = Decoder(target)
    partings, roundings = [], []
    for prompt in prompts:
        ids = plain.encode(prompt, chat=True)
        with decided_rows(target) as step:
            alone = plain.generate(ids, tokens).ids
        with decided_rows(target) as verify:
            drafted = speculative.generate(ids, tokens).ids
        for index, (a, b) in enumerate(zip(alone, drafted)):
            s, v = step[len(ids) + index], verify[len(ids) + index]
            assert int(checked_max(s[None], "step")[0]) == a and int(checked_max(v[None], "verify")[0]) == b, index
            rounding = float((v - s).abs().max())
            roundings.append(rounding / ulp(s, dtype))
            if a != b:
                partings.append(Parting(index, rounding, float(s[a] - s[b]), float(v[b] - v[a])))
                break
    return partings, roundings


# How far a verify row may lie from the one-token step's row, in ulps of `dtype` at the row's
# largest logit. Measured on the default pair (Spec-Bench prompts, draft and prompt lookup) on the
# CPU: bfloat16 2-4 typically, 8.5 at most (8 prompts x 48 tokens); float16 6.5 at most; float32
# 16-20 typically, 33 at most (its differences come from the GEMM kernels' summation orders, not
# from rounding each result). A forward that is wrong rather than rounded differently moves them
# further: a verify row that sees the token after it (planted) moved them by 93 bfloat16 ulps.
ROUNDING_ULPS = {torch.bfloat16: 16, torch.float16: 16, torch.float32: 64}


@pytest.mark.slow
def test_bfloat16_greedy_output_parts_from_target_only_only_at_near_ties(one_thread):
    target = load_model(model_path("smollm2-135m-instruct"), dtype="bfloat16")
    draft = load_model(model_path("smollm2-draft"), dtype="bfloat16")
    prompts = spec_bench_prompts(4)
    roundings, partings = [], []
    for policy, proposer in (("fixed", "draft"), ("auto", "draft"), ("fixed", "prompt-lookup")):
        speculative = Decoder(target, proposer=proposer, draft=draft if proposer == "draft" else None, policy=policy)
        found, measured = greedy_partings(target, speculative, prompts, 24)
        partings += found
        roundings += measured
    bound = ROUNDING_ULPS[torch.bfloat16]
    assert max(roundings) <= bound, f"a verify forward's logits moved by {max(roundings)} ulps from the one-token step's"
    assert max(roundings) > 0, "bfloat16 verify and step forwards agree exactly here: the docs' caveat would be moot"
    for parting in partings:
        # If two logit rows differ by at most d at every entry and their argmaxes a != b, then
        # step[a] - step[b] = (step[a] - verify[a]) - (step[b] - verify[b]) + (verify[a] - verify[b])
        # <= d + d + 0, and likewise for the verify row: a parting at a gap wider than 2d is not
        # rounding (the argmax checks above make sure each token is its row's argmax).
        assert parting.step_gap <= 2 * parting.rounding and parting.verify_gap <= 2 * parting.rounding, parting
