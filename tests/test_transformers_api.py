"""The Python API from a transformers user's side: the objects they hold work as they expect.

Models come from `AutoModelForCausalLM.from_pretrained`, prompts from `AutoTokenizer`, settings
from `GenerationConfig`, output goes to transformers' streamers; `model.generate` is the reference.
The tiny TinyStories pair runs in the fast tier; the default pair's identity check is `slow`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, TextIteratorStreamer, TextStreamer

from specdec import ConfigurationError, Decoder, InputError, PluginError
from specdec.generation_options import resolve_options
from specdec.integrations.loading import load_model
from specdec.sampling import SamplingConfig
from tests.models import model_path, real_model

TARGET, DRAFT = "stories260K", "stories260K-draft"
PROMPTS = [
    "Once upon a time", "Lily had a red ball", "The dog ran to the park", "Tom was sad because",
    "One day, a little bird", "The sun was hot and", "Mom said to Ben", "In the garden there was",
    "The cat saw a big", "Sara wanted to play",
]
CHAT_TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(model_path(TARGET))


@pytest.fixture(scope="module")
def model():
    return AutoModelForCausalLM.from_pretrained(model_path(TARGET))


@pytest.fixture(scope="module")
def draft():
    return AutoModelForCausalLM.from_pretrained(model_path(DRAFT))


@pytest.fixture(scope="module")
def decoder(model, draft):
    return Decoder(model, draft=draft, policy="fixed", policy_params={"k": 3})


def reference_ids(model, inputs, config) -> list[int]:
    """What transformers' own `generate` gives: the new ids only."""
    out = model.generate(**inputs, generation_config=config)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


# ---------------------------------------------------------------------------- models as held
def test_a_path_a_pathlib_path_and_a_transformers_model_are_the_same_target(model):
    texts = {
        Decoder(kind).generate("Once upon a time", 12).text
        for kind in (model_path(TARGET), Path(model_path(TARGET)), model)
    }
    assert len(texts) == 1 and texts != {""}


def test_a_cached_hub_id_loads(tmp_path):
    """A hub id resolves from the local cache (downloads are off), as from_pretrained would."""
    snapshot = tmp_path / "models--specdec-test--stories260K" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for file in Path(model_path(TARGET)).iterdir():
        (snapshot / file.name).symlink_to(file)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    code = "from specdec import Decoder; print(Decoder('specdec-test/stories260K').generate('Once upon a time', 8).text)"
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == Decoder(model_path(TARGET)).generate("Once upon a time", 8).text.strip()


def test_a_transformers_model_without_a_local_tokenizer_asks_for_one(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path)  # weights only: no tokenizer files beside them
    bare = AutoModelForCausalLM.from_pretrained(tmp_path)
    with pytest.raises(ConfigurationError, match=r"^no tokenizer found locally for the model '.*': pass tokenizer= as well$"):
        Decoder(bare)
    assert Decoder(bare, tokenizer=tokenizer).generate("Once upon a time", 8).text == Decoder(model).generate("Once upon a time", 8).text
    assert load_model(bare, tokenizer=tokenizer).codec is not None
    with pytest.raises(ConfigurationError, match=r"^no tokenizer found locally for the model '.*': pass tokenizer= as well$"):
        load_model(bare)
    assert load_model(bare, require_tokenizer=False).codec is None  # a model that decodes token ids only
    assert Decoder(model, draft=bare).generate("Once upon a time", 8).text  # a draft needs no tokenizer


def test_strategies_by_name_with_the_draft_given_once(model, draft):
    d = Decoder(model, draft=draft, policy="svip", proposer="draft", policy_params={"h": 0.5}, proposer_params={"context_window": 64})
    assert (d.policy.name, d.policy.h, d.proposer.name, d.proposer.context_window) == ("svip", 0.5, "draft", 64)
    assert Decoder(model, draft=model_path(DRAFT)).proposer.name == "draft"  # draft= alone: the draft proposer
    assert Decoder(model, proposer="prompt-lookup").proposer.name == "prompt-lookup"
    assert (Decoder(model).proposer, Decoder(model).policy.k) == (None, 4)  # target-only; the default policy
    assert Decoder(model, policy_params={"k": 2}).policy.k == 2  # parameters of the default policy


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"policy": "nope"}, PluginError, r"^unknown policy 'nope'; available: .*\bsvip\b.*$"),
        ({"proposer": "nope"}, PluginError, r"^unknown proposer 'nope'; available: .*\bdraft\b.*$"),
        ({"proposer": "draft"}, ConfigurationError, r"^proposer 'draft' drafts with a model: pass draft= \(a path or a model\)$"),
        ({"proposer": "prompt-lookup", "draft": "x"}, ConfigurationError, r"^proposer 'prompt-lookup' does not use a draft model; drop draft=$"),
        ({"policy": "fixed", "policy_params": {"kk": 1}}, ConfigurationError, r"^policy 'fixed' has no parameter 'kk'; parameters: k$"),
        ({"draft": model_path(DRAFT), "proposer_params": {"model": 1}}, ConfigurationError, r"^proposer 'draft' has no parameter 'model'; parameters: "),
    ],
)
def test_strategy_mistakes_are_one_line_errors(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        Decoder(model, **kwargs)


def test_parameters_or_a_draft_for_strategy_objects_are_refused(model, draft):
    built = Decoder(model, draft=draft)
    with pytest.raises(ConfigurationError, match=r"^policy_params= applies to a policy given by name; set them on the policy object instead$"):
        Decoder(model, policy=built.policy, policy_params={"k": 2})
    with pytest.raises(ConfigurationError, match=r"^draft= goes with a proposer given by name \(e.g. proposer='draft'\); this proposer holds its own model$"):
        Decoder(model, proposer=built.proposer, draft=draft)


# ---------------------------------------------------------------------------- generate as transformers
def test_greedy_ids_match_model_generate_on_ten_prompts(model, tokenizer, decoder):
    config = GenerationConfig(max_new_tokens=24, do_sample=False)
    for prompt in PROMPTS:
        inputs = tokenizer(prompt, return_tensors="pt")
        assert list(decoder.generate(**inputs, generation_config=config).ids) == reference_ids(model, inputs, config), prompt


def test_do_sample_false_is_greedy_whatever_the_temperature(decoder):
    greedy = decoder.generate("Once upon a time", 20).ids
    assert decoder.generate("Once upon a time", 20, do_sample=False, temperature=1.5, top_k=3).ids == greedy
    assert decoder.generate("Once upon a time", 20, generation_config=GenerationConfig(temperature=1.5)).ids == greedy


def test_transformers_defaults_apply_as_transformers_applies_them(model):
    defaults = model.generation_config
    assert resolve_options(options={"do_sample": True}, model_defaults=defaults).sampling == SamplingConfig(1.0, 50, None)
    config = GenerationConfig(do_sample=True, top_k=0, top_p=0.9, temperature=0.7)
    assert resolve_options(generation_config=config, model_defaults=defaults).sampling == SamplingConfig(0.7, None, 0.9)
    tuned = GenerationConfig(do_sample=True, top_k=7)  # a model's own generation_config comes before the defaults
    assert resolve_options(options={"temperature": 0.5, "do_sample": True}, model_defaults=tuned).sampling == SamplingConfig(0.5, 7, None)
    # specdec's own keywords keep their meaning: no do_sample, no config
    assert resolve_options(temperature=0.8).sampling == SamplingConfig(0.8, None, None)
    assert resolve_options(options={"max_length": 9}, generation_config=GenerationConfig()).new_tokens(4) == 5


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"num_beams": 2}, r"^num_beams=2 is not supported: exact speculative decoding applies temperature, top_k and top_p only$"),
        ({"repetition_penalty": 1.2}, r"^repetition_penalty=1.2 is not supported: "),
        ({"num_return_sequences": 2}, r"^num_return_sequences=2 is not supported: "),
        ({"min_new_tokens": 5}, r"^min_new_tokens=5 is not supported: "),
        ({"do_sample": True, "temperature": 0.0}, r"^do_sample=True needs temperature > 0, got 0.0 \(do_sample=False is greedy\)$"),
        ({"foo": 1}, r"^generate\(\) got an unknown option 'foo'$"),
        ({"eos_token_id": "x"}, r"^eos_token_id must be a token id or a list of them, got 'x'$"),
        ({"generation_config": {"do_sample": True}}, r"^generation_config must be a transformers GenerationConfig, got dict$"),
        ({"streamer": print}, r"^streamer must have put\(tensor\) and end\(\) like transformers' streamers, got builtin_function_or_method$"),
    ],
)
def test_options_that_cannot_apply_are_named(decoder, option, message):
    with pytest.raises(ConfigurationError, match=message):
        decoder.generate("Once upon a time", 8, **option)


def test_unsupported_options_in_a_generation_config_are_named_too(decoder):
    with pytest.raises(ConfigurationError, match=r"^num_beams=4 is not supported"):
        decoder.generate("Once upon a time", 8, generation_config=GenerationConfig(num_beams=4))


def test_eos_token_id_ends_the_generation_for_target_and_draft(model, decoder):
    greedy = list(decoder.generate("Once upon a time", 20).ids)
    end = greedy[6]
    assert end not in greedy[:6]
    for eos in (end, [end, 99999 % model.config.vocab_size]):
        result = decoder.generate("Once upon a time", 20, eos_token_id=eos)
        assert (list(result.ids), result.finish_reason) == (greedy[:7], "eos")
        assert list(Decoder(model).generate("Once upon a time", 20, eos_token_id=eos).ids) == greedy[:7]
    assert decoder.target.eos_token_ids == frozenset({2})  # a per-call value: the model is unchanged


def test_stop_strings(decoder):
    full = decoder.generate("Once upon a time", 30).text
    result = decoder.generate("Once upon a time", 30, stop_strings=["Lily"])
    assert result.finish_reason == "stop" and result.text.endswith("Lily") and full.startswith(result.text)


# ---------------------------------------------------------------------------- prompts as held
def test_input_ids_as_tensor_list_and_left_padded(tokenizer, decoder):
    inputs = tokenizer("Once upon a time", return_tensors="pt")
    expected = decoder.generate("Once upon a time", 12).ids
    ids = inputs["input_ids"]
    assert decoder.generate(input_ids=ids, max_new_tokens=12).ids == expected
    assert decoder.generate(ids[0].tolist(), 12).ids == expected
    assert decoder.generate(ids, 12).ids == expected
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), inputs["attention_mask"]], dim=1)
    result = decoder.generate(input_ids=padded, attention_mask=mask, max_new_tokens=12)
    assert (result.ids, list(result.prompt_ids)) == (expected, ids[0].tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_ids": torch.ones(2, 4, dtype=torch.long)}, r"^input_ids holds a batch of 2 sequences; specdec decodes one at a time: pass one row$"),
        ({"input_ids": [[5, 6], [7, 8]]}, r"^input_ids holds a batch of 2 sequences"),
        ({"input_ids": torch.ones(1, 3, dtype=torch.long), "attention_mask": torch.tensor([[1, 0, 1]])},
         r"^attention_mask has padding after the first real token; only left padding can be removed$"),
        ({"input_ids": torch.ones(1, 3, dtype=torch.long), "attention_mask": torch.ones(1, 2)}, r"^attention_mask has 2 entries but input_ids has 3$"),
        ({"prompt": "Once", "input_ids": [5]}, r"^give the prompt once: either as the first argument or as input_ids=$"),
        ({}, r"^no prompt: pass text, chat messages or input_ids=$"),
    ],
)
def test_prompt_mistakes_are_one_line_errors(decoder, kwargs, message):
    with pytest.raises(InputError, match=message):
        decoder.generate(max_new_tokens=4, **kwargs)


def test_chat_messages_apply_the_chat_template(model, tokenizer):
    chatty = AutoTokenizer.from_pretrained(model_path(TARGET))
    chatty.chat_template = CHAT_TEMPLATE
    messages = [{"role": "system", "content": "Tell a story."}, {"role": "user", "content": "A cat"}]
    d = Decoder(model, tokenizer=chatty)
    templated = chatty.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    result = d.generate(messages, 10)
    assert list(result.prompt_ids) == list(templated) and result.ids == d.generate(list(templated), 10).ids
    with pytest.raises(InputError, match=r"^this tokenizer has no chat template"):
        Decoder(model, tokenizer=tokenizer).generate(messages, 4)


# ---------------------------------------------------------------------------- streamers
class Recorder:
    """A streamer that keeps what it is given."""

    def __init__(self) -> None:
        self.puts: list[torch.Tensor] = []
        self.ended = 0

    def put(self, value: torch.Tensor) -> None:
        self.puts.append(value)

    def end(self) -> None:
        self.ended += 1


def test_a_streamer_gets_the_prompt_then_the_accepted_tokens_as_transformers_feeds_it(model, tokenizer, decoder):
    inputs = tokenizer("Once upon a time", return_tensors="pt")
    config = GenerationConfig(max_new_tokens=16, do_sample=False)
    ours, theirs = Recorder(), Recorder()
    result = decoder.generate(**inputs, generation_config=config, streamer=ours)
    model.generate(**inputs, generation_config=config, streamer=theirs)
    for rec in (ours, theirs):
        assert rec.puts[0].shape == (1, 5) and rec.puts[0].tolist() == inputs["input_ids"].tolist() and rec.ended == 1
    assert torch.cat([p.reshape(-1) for p in ours.puts[1:]]).tolist() == torch.cat([p.reshape(-1) for p in theirs.puts[1:]]).tolist()
    assert torch.cat([p.reshape(-1) for p in ours.puts[1:]]).tolist() == list(result.ids)
    assert len(ours.puts) - 1 == result.stats.rounds  # one put per round: tokens as they are accepted


def test_text_streamer_prints_the_text(tokenizer, decoder, capsys):
    result = decoder.generate("Once upon a time", 16, streamer=TextStreamer(tokenizer, skip_prompt=True))
    assert capsys.readouterr().out == result.text + "\n"


def test_text_iterator_streamer_from_a_thread(tokenizer, decoder):
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    results = []
    thread = threading.Thread(target=lambda: results.append(decoder.generate("Once upon a time", 16, streamer=streamer)))
    thread.start()
    text = "".join(streamer)
    thread.join()
    assert text == results[0].text


def test_stream_takes_a_streamer_too(decoder):
    rec = Recorder()
    ids = list(decoder.stream("Once upon a time", 10, streamer=rec))
    assert torch.cat([p.reshape(-1) for p in rec.puts[1:]]).tolist() == ids and rec.ended == 1


# ---------------------------------------------------------------------------- randomness
def test_torch_manual_seed_makes_sampling_reproducible_and_unseeded_runs_differ(decoder):
    def sampled():
        return decoder.generate("Once upon a time", 40, do_sample=True, temperature=1.5).ids

    torch.manual_seed(123)
    first = sampled()
    torch.manual_seed(123)
    assert sampled() == first
    assert sampled() != sampled()


def test_greedy_calls_draw_no_randomness(decoder):
    torch.manual_seed(5)
    alone = decoder.generate("Once upon a time", 30, do_sample=True).ids
    torch.manual_seed(5)
    decoder.generate("Once upon a time", 10)
    assert decoder.generate("Once upon a time", 30, do_sample=True).ids == alone


def test_an_explicit_seed_is_reproducible_across_processes():
    fresh = Decoder(model_path(TARGET), draft=model_path(DRAFT), policy="fixed", policy_params={"k": 3})
    ids = fresh.generate("Once upon a time", 24, temperature=1.0, seed=11).ids
    torch.manual_seed(0)  # torch's generator plays no part
    assert fresh.generate("Once upon a time", 24, temperature=1.0, seed=11).ids == ids
    code = (
        "from specdec import Decoder; from tests.models import model_path;"
        f"d = Decoder(model_path({TARGET!r}), draft=model_path({DRAFT!r}), policy='fixed', policy_params={{'k': 3}});"
        "print(list(d.generate('Once upon a time', 24, temperature=1.0, seed=11).ids))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent.parent)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == str(list(ids))


# ---------------------------------------------------------------------------- the default pair
@pytest.mark.slow
def test_greedy_ids_match_model_generate_on_the_default_pair():
    target, draft = real_model("smollm2-135m-instruct"), real_model("smollm2-draft")
    model, tokenizer = target.model, target.codec.tokenizer
    decoder = Decoder(model, tokenizer=tokenizer, draft=draft.model, policy="fixed", policy_params={"k": 3})
    config = GenerationConfig(max_new_tokens=24, do_sample=False)
    questions = [
        "What is 12 * 7?", "Name three colours.", "Why is the sky blue?", "Write a haiku about rain.",
        "What is the capital of France?", "Explain a KV cache in one sentence.", "List two prime numbers.",
        "Translate 'hello' into Spanish.", "What does a CPU do?", "Give a synonym for happy.",
    ]
    for question in questions:
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        assert list(decoder.generate(**inputs, generation_config=config).ids) == reference_ids(model, inputs, config), question
