"""Inputs that used to end in a traceback or be accepted silently: each is one `specdec: error:`
line on the command line, or a `SpecdecError` in the API, naming what was wrong and what to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from specdec import ConfigurationError, Decoder, InputError, VocabularyMismatchError
from specdec.bench.prompts import load_spec_bench
from specdec.cli import main
from specdec.integrations.loading import load_model
from specdec.strategies.policies import AdaEdlPolicy
from specdec.strategies.policies.pacer.network import PacerConfig, PreVerifier
from specdec.strategies.proposers.phrase_pool import PhrasePool
from tests.models import real_model
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET, cli_env, tiny
from tests.test_cli_errors import PAIR, assert_one_line_error

TINY = ["--max-new-tokens", "2"]


def cli(args: list[str], capsys) -> str:
    try:
        code = main(args)
    except SystemExit as done:  # argparse's own checks
        code = done.code
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "", captured
    return captured.err


def a_pool(tmp_path: Path, edit=None) -> Path:
    pool = PhrasePool()
    pool.add(3, [4, 5])
    data = pool.to_dict()
    if edit:
        edit(data)
    path = tmp_path / "pool.json"
    path.write_text(json.dumps(data))
    return path


def _negative(data: dict) -> None:
    data["table"][0][1][0][0] = -2


@pytest.mark.parametrize(
    "args, says",
    [
        (["generate", "Once", *PAIR, "--seed", str(2**64)], ("--seed", f"expected an integer from {-(2**63)} to {2**64 - 1}")),
        (["generate", "Once", *PAIR, "--seed", str(-(2**63) - 1)], ("--seed", "expected an integer from")),
        (["train-pacer", *PAIR, "--threads", "0"], ("--threads", "expected an integer >= 1, got '0'")),
        (["train-pacer", *PAIR, "--seed", str(2**70)], ("--seed", "expected an integer from")),
        (["train-pacer", *PAIR, "--batch-size", "0"], ("--batch-size", "expected an integer >= 1")),
        (["generate", "Once", *PAIR, "--target-only", "--policy-param", "k=abc"], ("parameter 'k' expects int, got 'abc'",)),
        (["generate", "Once", *PAIR, "--target-only", "--policy-param", "kk=3"], ("has no parameter 'kk'",)),
        (["generate", "Once", *PAIR, "--target-only", "--policy-param", "k=0"], ("policy 'fixed'", "k")),
        (["generate", "Once", *PAIR, "--target-only", "--proposer-param", "int8=maybe"], ("expects bool",)),
        (["generate", "Once", *PAIR, "--policy", "adaedl", "--policy-param", "min_draft=5", "--policy-param", "max_draft=2"],
         ("min_draft (5) is larger than max_draft (2)",)),
    ],
    ids=lambda v: " ".join(a for a in v if a not in PAIR) if isinstance(v, list) else None,
)
def test_bad_options(args, says, capsys):
    assert_one_line_error(cli(args, capsys), *says)


def test_a_prompt_that_is_not_utf8_is_one_error_line():
    """Bytes that are not UTF-8 on the command line reach Python as lone surrogates."""
    done = subprocess.run(
        [sys.executable, "-m", "specdec", "generate", b"Once \xff\xfe".decode("utf-8", "surrogateescape"), *PAIR, *TINY, "--target-only"],
        capture_output=True, text=True, env=cli_env(), timeout=300,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert_one_line_error(done.stderr, "the prompt is not valid UTF-8 text (character 5", "pass the text encoded as UTF-8")


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda tmp: tmp, "cannot read the phrase pool"),  # a directory
        (lambda tmp: a_pool(tmp, _negative), "token ids are integers >= 0, got -2"),
        (lambda tmp: (tmp / "pool.json").write_bytes(b"\xff\xfe") and tmp / "pool.json", "is not valid JSON"),
    ],
    ids=["directory", "negative id", "not utf-8"],
)
def test_a_bad_phrase_pool_file(make, says, tmp_path, capsys):
    path = make(tmp_path)
    err = cli(["generate", "Once", *PAIR, *TINY, "--proposer", "ouroboros", "--proposer-param", f"pool_file={path}"], capsys)
    assert_one_line_error(err, says)


def test_a_missing_phrase_pool_file_starts_an_empty_pool_with_a_note(tmp_path, capsys):
    path = tmp_path / "new-pool.json"
    assert main(["generate", "Once", *PAIR, *TINY, "--json", "--proposer", "ouroboros", "--proposer-param", f"pool_file={path}"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("specdec: note:")]
    assert notes == [f"specdec: note: no phrase pool at {str(path)!r} yet: starting an empty one (save_pool() writes it there)"]
    with pytest.raises(ConfigurationError, match="no phrase pool at"):
        PhrasePool.load(path)


def test_truncated_pacer_weights(tmp_path, capsys):
    folder = PreVerifier.random(PacerConfig(hidden_size=64)).save_pretrained(tmp_path / "pacer")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    err = cli(["generate", "Once", *PAIR, *TINY, "--policy", "pacer", "--policy-param", f"path={folder}"], capsys)
    assert_one_line_error(err, f"cannot read {weights}", "train the pre-verifier again")


@pytest.mark.parametrize(
    "content, says",
    [
        ("", "holds no prompts"),
        ('{"category": "writing", "question_id": 1, "turns": "a string"}\n', "line 1 is not a Spec-Bench row"),
        ('{"category": 3, "question_id": 1, "turns": ["Hi"]}\n', "line 1 is not a Spec-Bench row"),
        ("[" * 100_000 + "\n", "line 1 is not a Spec-Bench row"),
    ],
    ids=["empty", "turns a string", "category a number", "deep nesting"],
)
def test_a_bad_prompt_file(content, says, tmp_path, capsys):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(content)
    err = cli(["bench", *PAIR, "--prompts", str(prompts), "--methods", "target-only", "--out", str(tmp_path)], capsys)
    assert_one_line_error(err, says)


def test_spec_bench_selections_in_the_api():
    with pytest.raises(ConfigurationError, match="per_category must be an integer >= 1, got 0"):
        load_spec_bench(per_category=0)
    with pytest.raises(ConfigurationError, match="unknown category 'nosuch'"):
        load_spec_bench(categories=["nosuch"])


# ---------------------------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder(real_model(TINY_TARGET))


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 1.5, "3", True])
def test_a_seed_torch_cannot_take(decoder, seed):
    with pytest.raises(ConfigurationError, match="seed must"):
        decoder.generate("Once", 2, temperature=1.0, seed=seed)


def test_seeds_at_the_ends_of_64_bits(decoder):
    assert len(decoder.generate("Once", 2, temperature=1.0, seed=2**64 - 1).ids) == 2
    assert len(decoder.generate("Once", 2, temperature=1.0, seed=-(2**63)).ids) == 2


def test_a_stop_string_is_one_string_not_its_characters(decoder):
    prompt = "Once upon a time, there was a little girl named"
    assert decoder.generate(prompt, 40).text.startswith("Lily. She loved to play outside in the park.")
    stopped = decoder.generate(prompt, 40, stop="park").text  # not a stop at the first "p", "a", "r" or "k"
    assert stopped == "Lily. She loved to play outside in the park"
    assert decoder.generate(prompt, 40, stop=["park"]).text == stopped


@pytest.mark.parametrize("stop, says", [(b"Lily", "must be a string or a list of strings"), (["Lily", 3], "strings only"), (7, "a string")])
def test_a_stop_that_is_not_strings(decoder, stop, says):
    with pytest.raises(ConfigurationError, match=says):
        decoder.generate("Once", 4, stop=stop)


@pytest.mark.parametrize(
    "prompt, says",
    [
        (b"Once", "must be token ids"),
        (bytearray(b"Once"), "must be token ids"),
        ([1.0, 403.0], "must be token ids \\(integers\\), got float 1.0"),
        (torch.tensor([[1.0, 403.0]]), "must be an integer tensor, got dtype float32"),
        ([True, 403], "got bool True"),
        (3.0, "must be token ids"),
    ],
    ids=["bytes", "bytearray", "floats", "float tensor", "bools", "a float"],
)
def test_a_prompt_that_is_not_token_ids(decoder, prompt, says):
    with pytest.raises(InputError, match=says):
        decoder.generate(prompt, 2)


def test_integer_prompts_of_every_kind_are_taken(decoder):
    import numpy as np

    expected = decoder.generate([1, 403, 407], 3).ids
    for prompt in (torch.tensor([[1, 403, 407]]), np.array([1, 403, 407]), [np.int64(1), 403, torch.tensor(407)]):
        assert decoder.generate(prompt, 3).ids == expected


def test_a_text_prompt_that_is_not_utf8(decoder):
    with pytest.raises(InputError, match="not valid UTF-8 text"):
        decoder.generate(b"Once \xff".decode("utf-8", "surrogateescape"), 2)


def test_adaedl_min_draft_above_max_draft():
    with pytest.raises(ConfigurationError, match="min_draft \\(5\\) is larger than max_draft \\(2\\)"):
        AdaEdlPolicy(min_draft=5, max_draft=2)
    assert AdaEdlPolicy(min_draft=2, max_draft=2).min_draft == 2


def test_load_model_threads():
    with pytest.raises(ConfigurationError, match="threads must be an integer >= 1"):
        load_model(tiny(TINY_TARGET), threads=0)


def _other_tokenizer(size: int):
    """A tokenizer of `size` made-up words: the same size as the tiny pair's, another vocabulary."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    words = Tokenizer(WordLevel({f"word{i}": i for i in range(size)}, unk_token="word0"))
    words.pre_tokenizer = Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=words, unk_token="word0")


def test_a_draft_with_another_tokenizer_of_the_same_size():
    target = real_model(TINY_TARGET)
    other = load_model(tiny(TINY_DRAFT), tokenizer=_other_tokenizer(target.vocab_size))
    assert other.vocab_size == target.vocab_size
    with pytest.raises(VocabularyMismatchError, match="the draft's tokenizer is not the target's: .* decode differently"):
        Decoder(target, draft=other)
    assert Decoder(target, draft=real_model(TINY_DRAFT)).generate("Once", 4).stats.generated == 4
