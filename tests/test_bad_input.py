"""Bad input gets a clear error, raised before any work is lost."""

from __future__ import annotations

import math

import pytest

from specdec import ConfigurationError, Decoder, InputError, ModelNotFoundError, NonFiniteLogitsError, VocabularyMismatchError
from specdec.integrations.loading import load_model
from specdec.integrations.toy import ToyModel
from specdec.plugins import registry
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers import DraftModelProposer
from specdec.cli.values import build_strategy


def toy(vocab: int = 3, *, max_length: int | None = None, nan: bool = False) -> ToyModel:
    row = [float("nan")] * vocab if nan else [0.0] * vocab
    return ToyModel({(): row, **{(t,): row for t in range(vocab)}}, vocab, max_length=max_length)


def pair() -> Decoder:
    return Decoder(toy(), proposer=DraftModelProposer(toy()), policy=FixedPolicy(2))


@pytest.mark.parametrize("prompt", ["", []])
def test_empty_prompt(prompt):
    with pytest.raises(InputError, match="empty"):
        pair().generate(prompt, 4)


def test_prompt_longer_than_the_context():
    decoder = Decoder(toy(max_length=4), proposer=DraftModelProposer(toy()), policy=FixedPolicy(2))
    with pytest.raises(InputError, match="context"):
        decoder.generate([1, 1, 1, 1, 1], 4)


def test_generation_stops_at_the_context_limit():
    decoder = Decoder(toy(max_length=6), proposer=DraftModelProposer(toy()), policy=FixedPolicy(3))
    result = decoder.generate([1, 1], 10)
    assert len(result.ids) == 4 and result.finish_reason == "context"


def test_token_ids_outside_the_vocabulary():
    with pytest.raises(InputError, match="outside the vocabulary"):
        pair().generate([1, 7], 4)


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_k_below_one(k):
    with pytest.raises(ConfigurationError, match="k must be an integer >= 1"):
        FixedPolicy(k)


def test_k_below_one_from_the_cli_parameters():
    with pytest.raises(ConfigurationError, match="k must be"):
        build_strategy(registry(), "policy", "fixed", {"k": "0"})


def test_unknown_parameter_names_the_valid_ones():
    with pytest.raises(ConfigurationError, match="parameters: k"):
        build_strategy(registry(), "policy", "fixed", {"kk": "3"})


@pytest.mark.parametrize("temperature", [-0.1, math.nan, math.inf])
def test_bad_temperature(temperature):
    with pytest.raises(ConfigurationError, match="temperature"):
        pair().generate([1], 4, temperature=temperature)


@pytest.mark.parametrize("top_p", [0.0, -0.5, 1.01])
def test_top_p_outside_zero_one(top_p):
    with pytest.raises(ConfigurationError, match="top_p"):
        pair().generate([1], 4, temperature=1.0, top_p=top_p)


@pytest.mark.parametrize("top_k", [0, -3])
def test_bad_top_k(top_k):
    with pytest.raises(ConfigurationError, match="top_k"):
        pair().generate([1], 4, temperature=1.0, top_k=top_k)


@pytest.mark.parametrize("max_new_tokens", [0, -1])
def test_bad_max_new_tokens(max_new_tokens):
    with pytest.raises(ConfigurationError, match="max_new_tokens"):
        pair().generate([1], max_new_tokens)


def test_target_and_draft_with_different_vocabularies():
    with pytest.raises(VocabularyMismatchError, match="4 tokens but the target .* has 3"):
        Decoder(toy(3), proposer=DraftModelProposer(toy(4)))


def test_real_models_with_different_vocabularies():
    from tests.models import model_path

    target = load_model(model_path("stories260K"))
    draft = load_model(model_path("smollm2-draft"))
    with pytest.raises(VocabularyMismatchError, match="49152 tokens but the target"):
        Decoder(target, proposer=DraftModelProposer(draft))


@pytest.mark.parametrize("path", ["/nonexistent/model-dir", "./no-such-model", "no-such-org/no-such-model"])
def test_missing_model_path(path):
    with pytest.raises(ModelNotFoundError, match="no-such|does not exist|nonexistent"):
        load_model(path)


def test_nan_logits_from_the_target():
    decoder = Decoder(toy(nan=True), proposer=DraftModelProposer(toy()), policy=FixedPolicy(2))
    with pytest.raises(NonFiniteLogitsError, match="target"):
        decoder.generate([1], 4)


def test_nan_logits_from_the_draft():
    decoder = Decoder(toy(), proposer=DraftModelProposer(toy(nan=True)), policy=FixedPolicy(2))
    with pytest.raises(NonFiniteLogitsError, match="draft"):
        decoder.generate([1], 4)


def test_empty_stop_string():
    with pytest.raises(InputError, match="stop"):
        pair().generate([1], 4, stop=[""])


def test_decoder_is_reusable_after_an_error():
    decoder = pair()
    with pytest.raises(InputError):
        decoder.generate([], 4)
    assert len(decoder.generate([1], 4).ids) == 4
