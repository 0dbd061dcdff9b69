"""Random command lines and keyword values on the tiny pair: every run either succeeds with valid
output or is refused with one `specdec: error:` line (exit code 2), never a traceback; the API
returns a valid result or raises one of specdec's own errors.

The CLI runs in this process (`specdec.cli.main`) with the two models loaded once: what is
exercised is everything between the command line and the result, not the loading itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

import specdec.cli.options
from specdec import Decoder, SpecdecError
from specdec.cli import main
from tests.models import real_model
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET, tiny

VOCAB = 512
PAIR = ["--target", tiny(TINY_TARGET), "--draft", tiny(TINY_DRAFT)]

WORDS = st.sampled_from(["Once", " upon", " a time", "", " ", "Lily", "😀", "日本", "\n", "-", "--", "é", "\x00", "\t"])
TEXT = st.lists(WORDS, max_size=4).map("".join)
NUMBERS = st.one_of(
    st.integers(-3, 40), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 1e-45, 1e-6, 0.5, 0.999999, 1.0, 1.5, 2.0, 1e300]),
).map(str)
WORDY = st.sampled_from(["", "x", "1e", "0x10", " 3", "1_0", "nan", "-inf", "١"])  # not numbers, or only to some parsers
VALUE = st.one_of(NUMBERS, WORDY)
PARAMS = st.sampled_from(["k=2", "k=0", "k=-1", "k=abc", "k=", "kk=3", "k", "=3", "k=2=3", "confidence=0.5", "k=1e9"])
OPTIONS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["--max-new-tokens", "--temperature", "--top-k", "--top-p"]), VALUE),
        st.tuples(st.just("--seed"), st.integers(-(2**63), 2**63 - 1).map(str)),  # within 64 bits
        st.tuples(st.just("--policy"), st.sampled_from(["fixed", "adaedl", "confidence", "auto", "svip", "nosuch", ""])),
        st.tuples(st.just("--proposer"), st.sampled_from(["draft", "prompt-lookup", "nosuch"])),
        st.tuples(st.just("--policy-param"), PARAMS),
        st.tuples(st.just("--proposer-param"), st.sampled_from(["int8=true", "int8=maybe", "head_tokens=64"])),
        st.tuples(st.just("--stop"), TEXT),
        st.sampled_from([("--json",), ("--target-only",), ("--chat",)]),
    ),
    max_size=6,
).map(lambda pairs: [word for pair in pairs for word in pair])


LOAD = specdec.cli.options.load
_loaded: dict[tuple[str, str], object] = {}


def cached_load(path: str, args):
    """The CLI's loader, once per model and dtype (a fresh adapter would only cost time)."""
    key = (path, args.dtype)
    if key not in _loaded:
        _loaded[key] = LOAD(path, args)
    return _loaded[key]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as done:  # only --help and --version exit: neither is generated
            code = done.code
    return code, out.getvalue(), err.getvalue()


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and not line.startswith(("Loading weights", "specdec: note:", "oracle"))]


@given(prompt=TEXT, options=OPTIONS)
def test_the_command_line_succeeds_or_says_what_is_wrong(prompt, options, monkeypatch_module):
    argv = ["generate", prompt, *PAIR, "--max-new-tokens", "12", *options]  # a later --max-new-tokens wins
    code, out, err = run(argv)
    assert "Traceback" not in err
    as_json = "--json" in (argv[: argv.index("--")] if "--" in argv else argv)  # after "--" it is a PROMPT
    if code == 0:
        if as_json:
            result = json.loads(out)
            assert all(0 <= i < VOCAB for i in result["ids"]) and result["text"] == real_model(TINY_TARGET).codec.decode(result["ids"])
        assert not [line for line in error_lines(err) if line.startswith("specdec: error:")]
    else:
        assert code == 2, f"specdec {argv} exited {code}:\n{err}"
        [line] = error_lines(err)
        assert line.startswith("specdec: error: ")
        if as_json:
            assert json.loads(out) == {"error": line.removeprefix("specdec: error: ")}
        else:
            assert out == ""


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(specdec.cli.options, "load", cached_load)
        yield patch


@pytest.fixture(scope="module")
def decoders() -> dict[str, Decoder]:
    target, draft = real_model(TINY_TARGET), real_model(TINY_DRAFT)
    return {"speculative": Decoder(target, draft=draft), "target-only": Decoder(target)}


KEYWORDS = st.fixed_dictionaries({}, optional={
    "temperature": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, 1, 1e-45, 2.0])),
    "top_k": st.one_of(st.none(), st.integers(-2, 600), st.sampled_from([1.5, "3", True])),
    "top_p": st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([1e-6, 1, 0])),
    "seed": st.one_of(st.none(), st.integers(0, 2**63 - 1)),
    "stop": st.lists(TEXT, max_size=2),
    "do_sample": st.booleans(),
})


@given(which=st.sampled_from(["speculative", "target-only"]), prompt=TEXT, max_new_tokens=st.integers(-1, 24), kwargs=KEYWORDS)
def test_the_api_returns_a_valid_result_or_raises_its_own_error(decoders, which, prompt, max_new_tokens, kwargs):
    try:
        result = decoders[which].generate(prompt, max_new_tokens, **kwargs)
    except SpecdecError:
        return
    assert len(result.ids) <= max_new_tokens and all(0 <= i < VOCAB for i in result.ids)
    assert not math.isnan(result.stats.tokens_per_second)
