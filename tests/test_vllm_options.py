"""The vLLM integration's parts that need no engine: the options carried in the class path, the
one-line errors before an engine starts, the version check of the runner patch, and the clean
target directory."""

from __future__ import annotations

import importlib
import json

import pytest

from specdec.errors import ConfigurationError, ModelNotFoundError, PluginError
from specdec.integrations.vllm import VllmOptions, speculative_config, vllm_model_dir
from specdec.integrations.vllm.patch import EXPECTED, VllmVersionError, check, expand_batch_to_tokens


def test_the_config_is_a_custom_class_whose_name_carries_the_options(tmp_path):
    draft = tmp_path / "draft"
    draft.mkdir()
    config = speculative_config(policy="svip", draft=draft, num_speculative_tokens=5, proposer_params={"context_window": 64})
    assert config["method"] == "custom_class" and config["num_speculative_tokens"] == 5
    module_path, name = config["model"].rsplit(".", 1)
    assert all(part.isidentifier() for part in config["model"].split("."))  # what vLLM requires of the path
    cls = getattr(importlib.import_module(module_path), name)
    assert cls.options == VllmOptions("svip", "draft", 5, str(draft), {}, {"context_window": 64})
    assert getattr(importlib.import_module(module_path), name) is cls  # one class per name in a process


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(policy="nope", proposer="prompt-lookup"), PluginError, "unknown policy 'nope'"),
        (dict(proposer="nope"), PluginError, "unknown proposer 'nope'"),
        (dict(policy="fixed", policy_params={"kk": 3}, proposer="prompt-lookup"), ConfigurationError, "no parameter 'kk'"),
        (dict(policy="fixed", policy_params={"k": 0}, proposer="prompt-lookup"), ConfigurationError, "k must be"),
        (dict(proposer="prompt-lookup", num_speculative_tokens=0), ConfigurationError, "num_speculative_tokens"),
        (dict(proposer="draft"), ConfigurationError, "pass draft="),
        (dict(proposer="prompt-lookup", draft="/tmp"), ConfigurationError, "drop draft="),
        (dict(draft="/no/such/draft"), ModelNotFoundError, "does not exist"),
        (dict(), ConfigurationError, "name a proposer"),
        (dict(proposer="prompt-lookup", proposer_params={"max_ngram": object()}), ConfigurationError, "JSON"),
    ],
)
def test_bad_options_are_one_line_errors_before_any_engine(kwargs, error, words):
    with pytest.raises(error) as caught:
        speculative_config(**kwargs)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_variants_ride_in_the_class_name_and_are_checked_like_the_engines_own(tmp_path):
    from specdec.integrations.vllm.options import Strategies

    draft = tmp_path / "draft"
    draft.mkdir()
    variants = {"lookup": {"policy": "auto", "proposer": "prompt-lookup"}, "svip": {"policy": "svip", "proposer": "draft", "proposer_params": {"context_window": 64}}}
    config = speculative_config(policy="fixed", proposer="prompt-lookup", policy_params={"k": 3}, draft=draft, variants=variants)
    module_path, name = config["model"].rsplit(".", 1)
    options = getattr(importlib.import_module(module_path), name).options
    assert options.strategies() == Strategies("fixed", "prompt-lookup", {"k": 3})
    assert options.strategies("svip") == Strategies("svip", "draft", {}, {"context_window": 64})
    assert options.strategies("lookup") == Strategies("auto", "prompt-lookup")


@pytest.mark.parametrize(
    "variants, error, words",
    [
        ({"v": {"policy": "nope", "proposer": "prompt-lookup"}}, PluginError, "unknown policy 'nope'"),
        ({"v": {"policy": "fixed", "proposer": "prompt-lookup", "policy_params": {"k": 0}}}, ConfigurationError, "k must be"),
        ({"v": {"policy": "fixed", "proposer": "prompt-lookup", "proposer_params": {"kk": 1}}}, ConfigurationError, "no parameter 'kk'"),
        ({"v": {"policy": "svip", "proposer": "draft"}}, ConfigurationError, "(variant 'v') drafts with a model: pass draft="),
        ({"v": {"policy": "svip"}}, ConfigurationError, "must be a dict with policy and proposer"),
        ({"v": {"policy": "svip", "proposer": "draft", "draft": "/tmp"}}, ConfigurationError, "must be a dict with policy and proposer"),
        ({"": {"policy": "svip", "proposer": "prompt-lookup"}}, ConfigurationError, "non-empty string"),
        (["svip"], ConfigurationError, "variants must be a dict"),
    ],
)
def test_a_bad_variant_is_a_one_line_error(variants, error, words):
    with pytest.raises(error) as caught:
        speculative_config(proposer="prompt-lookup", variants=variants)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_class_name_specdec_did_not_make_is_refused():
    configured = importlib.import_module("specdec.integrations.vllm.configured")
    with pytest.raises(AttributeError):
        configured.Something
    with pytest.raises(ConfigurationError):
        getattr(configured, "Specdec_NOTBASE32!")


def _fitting() -> dict:
    """Functions with the leading parameters of vLLM 0.32's, by the names the patches use."""

    def propose_draft_token_ids(self, scheduler_output, sampled_token_ids, *rest): ...

    def _update_states(self, scheduler_output): ...

    def abort_requests(self, request_ids): ...

    def expand_batch_to_tokens(x, cu_num_tokens, num_tokens, replace_from=0, replace_to=0): ...

    found = {
        "GPUModelRunner.propose_draft_token_ids": propose_draft_token_ids,
        "GPUModelRunner._update_states": _update_states,
        "EngineCore.abort_requests": abort_requests,
        "rejection_sampler.expand_batch_to_tokens": expand_batch_to_tokens,
    }
    assert found.keys() == EXPECTED.keys()
    return found


def test_the_patch_fits_the_vllm_it_was_written_for():
    check("0.32.0", _fitting())


def test_another_vllm_is_a_clear_error():
    with pytest.raises(VllmVersionError, match="0.31.2 is not one of 0.32.x"):
        check("0.31.2", _fitting())

    def moved(sampled_token_ids, scheduler_output): ...

    for name in EXPECTED:
        with pytest.raises(VllmVersionError, match=f"{name} takes") as caught:
            check("0.32.0", {**_fitting(), name: moved})
        assert "\n" not in str(caught.value)
        with pytest.raises(VllmVersionError, match=f"{name} is gone"):
            check("0.32.0", {**_fitting(), name: None})


def test_each_request_value_is_repeated_for_its_draft_tokens():
    """What vLLM's rejection sampler reads per draft position: its request's temperature (greedy's
    -1 read as 1), top-k and top-p, at their own dtype; a request with no draft token gets none."""
    import torch

    temperature = torch.tensor([0.8, -1.0, 0.5, 0.7])
    cumulative = torch.tensor([2, 3, 3, 6], dtype=torch.int32)
    got = expand_batch_to_tokens(temperature, cumulative, 6, replace_from=-1.0, replace_to=1.0)
    assert got.dtype == torch.float32 and got.tolist() == pytest.approx([0.8, 0.8, 1.0, 0.7, 0.7, 0.7])
    top_k = expand_batch_to_tokens(torch.tensor([5, 0, 9], dtype=torch.int32), torch.tensor([1, 1, 3]), 3)
    assert top_k.dtype == torch.int32 and top_k.tolist() == [5, 9, 9]


def test_a_converted_config_naming_gguf_is_served_clean(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECDEC_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "converted"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "quantization_config": {"quant_method": "gguf"}}))
    clean = vllm_model_dir(model)
    assert clean != model and json.loads((clean / "config.json").read_text()) == {"model_type": "llama"}
    assert (clean / "model.safetensors").read_bytes() == b"weights"
    assert vllm_model_dir(model) == clean and vllm_model_dir(clean) == clean
    with pytest.raises(ModelNotFoundError):
        vllm_model_dir(tmp_path / "missing")


def test_a_sibling_shares_the_weights_but_not_the_cache():
    """What each vLLM request's draft runs on: the same model, its own sequence."""
    from specdec.defaults import models_dir
    from specdec.integrations.loading import load_model

    model = load_model(models_dir() / "stories260K-draft", require_tokenizer=False)
    sibling = model.sibling()
    assert sibling.model is model.model
    first = model.forward([1, 2, 3, 4]).logits
    assert sibling.cached_length == 0
    assert sibling.forward([1, 2, 3, 4]).logits.equal(first)
    sibling.forward([5])
    assert (model.cached_length, sibling.cached_length) == (4, 5)
