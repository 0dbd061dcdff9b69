"""The exactness checks on a CUDA device (marker `gpu`; skipped where torch sees no CUDA device).

On a CUDA machine, with a CUDA build of torch, `python -m pytest -m gpu -p no:cacheprovider`
runs them (docs/limits.md, "On a GPU", gives the command with the speed check). They load the
models on `cuda` in float32, bfloat16 and float16 and check what docs/limits.md promises there:
greedy output parts from target-only only at near-ties (`tests/test_dtypes.py`), the sampled
first two tokens follow the target's distribution, and every strategy decodes with its tensors on
the device.
"""

from __future__ import annotations

import pytest
import torch

from specdec import Decoder
from specdec.integrations.loading import load_model
from specdec.sampling import SamplingConfig, warp
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer
from tests.models import model_path
from tests.test_dtypes import ROUNDING_ULPS, greedy_partings
from tests.test_real_greedy_identity import spec_bench_prompts
from tests.test_real_sampling_statistics import ALPHA, PROMPT, chi_square_pvalue
from tests.test_real_sampling_statistics import draw as draw_samples

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason=f"no CUDA device (torch {torch.__version__}): the gpu tests run on a CUDA machine, python -m pytest -m gpu",
    ),
]
DTYPES = ["float32", "bfloat16", "float16"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_greedy_output_on_cuda_parts_from_target_only_only_at_near_ties(dtype):
    """As `test_bfloat16_greedy_output_parts_from_target_only_only_at_near_ties`, on the GPU: its
    matmuls pick kernels by shape, so even float32 may round a verify forward differently."""
    target = load_model(model_path("smollm2-135m-instruct"), device="cuda", dtype=dtype)
    draft = load_model(model_path("smollm2-draft"), device="cuda", dtype=dtype)
    roundings, partings = [], []
    for policy, proposer in (("fixed", "draft"), ("auto", "draft"), ("svip", "draft"), ("fixed", "prompt-lookup")):  # chains
        speculative = Decoder(target, proposer=proposer, draft=draft if proposer == "draft" else None, policy=policy)
        found, measured = greedy_partings(target, speculative, spec_bench_prompts(8), 48)
        partings += found
        roundings += measured
    bound = ROUNDING_ULPS[getattr(torch, dtype)]  # measured on the CPU: see tests/test_dtypes.py
    assert max(roundings) <= bound, f"{dtype} on cuda: a verify forward's logits moved by {max(roundings)} ulps from the step's"
    for parting in partings:  # the bound is proved in tests/test_dtypes.py
        assert parting.step_gap <= 2 * parting.rounding and parting.verify_gap <= 2 * parting.rounding, parting


def exact_first_two(target, ids: list[int], sampling: SamplingConfig) -> dict[tuple[int, int], float]:
    """The target's exact joint distribution of the first two tokens, from its own forwards."""
    target.reset()
    p1 = warp(target.forward(ids).logits[0], sampling)
    joint = {}
    for t1 in torch.nonzero(p1 > 1e-7).flatten().tolist():
        target.reset()
        p2 = warp(target.forward(ids + [t1]).logits[0], sampling)
        joint.update(((t1, t2), float(p1[t1] * p2[t2])) for t2 in torch.nonzero(p2 > 0).flatten().tolist())
    target.reset()
    return joint


@pytest.mark.parametrize("dtype", DTYPES)
def test_sampling_on_cuda_follows_the_target(dtype):
    target = load_model(model_path("stories260K"), device="cuda", dtype=dtype)
    draft = load_model(model_path("stories260K-draft"), device="cuda", dtype=dtype)
    decoder = Decoder(target, proposer=DraftModelProposer(draft), policy=FixedPolicy(2))
    ids = decoder.encode(PROMPT)
    sampling = SamplingConfig(0.8, top_k=20)
    pvalue = chi_square_pvalue(draw_samples(decoder, ids, sampling), exact_first_two(target, ids, sampling))
    assert pvalue > ALPHA, f"chi-square rejects the target distribution on cuda in {dtype} (p = {pvalue:.2g})"


@pytest.mark.parametrize("proposer", ["draft", "ouroboros", "prompt-lookup"])
def test_every_proposer_decodes_on_cuda(proposer):
    target = load_model(model_path("stories260K"), device="cuda", dtype="bfloat16")
    draft = load_model(model_path("stories260K-draft"), device="cuda", dtype="bfloat16") if proposer != "prompt-lookup" else None
    decoder = Decoder(target, proposer=proposer, draft=draft, policy="auto")
    for options in ({}, {"temperature": 0.8, "top_p": 0.9, "seed": 1, "coupled": False}, {"temperature": 0.8, "seed": 1, "coupled": True}):
        assert 0 < len(decoder.generate(PROMPT, 32, **options).ids) <= 32
    assert target.forward([5]).logits.device.type == "cuda"
