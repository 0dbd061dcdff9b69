"""Streamed text comes in whole characters: an emoji or a Japanese character split over several
byte tokens is printed once its last byte arrives, and the pieces join to the decoded text."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specdec.cli import main
from specdec.decoder import Decoder
from specdec.integrations.hf import HFCodec
from specdec.streaming import TextDeltas
from tests.models import model_path, real_model
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET, tiny

WORDS = ["Hi", " there", " 😀", "😀", " 日本", "語", " é", "ü", ".", ",", " ", "\n", '"', "’", " ok", "🇯🇵", "ß"]


@functools.lru_cache(maxsize=None)
def codec(name: str) -> HFCodec:
    from transformers import AutoTokenizer

    return HFCodec(AutoTokenizer.from_pretrained(model_path(name)))


def pieces(deltas: TextDeltas, ids: list[int], sizes: list[int]) -> list[str]:
    out, start = [], 0
    for size in sizes:
        out.append(deltas.add(ids[start : start + size]))
        start += size
    out.append(deltas.add(ids[start:]))
    out.append(deltas.flush())
    return out


# stories260K: sentencepiece with byte fallback; smollm2-draft: byte-level BPE (the default pair's)
@pytest.mark.parametrize("name", [TINY_TARGET, "smollm2-draft"])
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=12), sizes=st.lists(st.integers(1, 4), max_size=12))
def test_pieces_are_whole_characters_and_join_to_the_text(name, words, sizes):
    text_codec = codec(name)
    ids = text_codec.tokenizer("".join(words), add_special_tokens=False)["input_ids"]
    out = pieces(TextDeltas(text_codec), ids, sizes)
    assert "".join(out) == text_codec.decode(ids)
    assert not any("\ufffd" in piece for piece in out)


def test_a_character_is_held_back_until_its_last_byte():
    text_codec = codec(TINY_TARGET)
    ids = text_codec.tokenizer("Hi 😀", add_special_tokens=False)["input_ids"]
    deltas = TextDeltas(text_codec)
    out = [deltas.add([token]) for token in ids]
    assert out[-4:] == ["", "", "", "😀"] and "".join(out) == "Hi 😀"  # the emoji is four byte tokens
    assert deltas.flush() == ""


def test_an_incomplete_character_at_the_end_is_flushed_as_the_tokenizer_decodes_it():
    text_codec = codec(TINY_TARGET)
    ids = text_codec.tokenizer("ok 😀", add_special_tokens=False)["input_ids"][:-1]
    deltas = TextDeltas(text_codec)
    assert "".join(deltas.add([token]) for token in ids) + deltas.flush() == text_codec.decode(ids)


def test_generate_streams_non_ascii_text_whole(monkeypatch, capsys):
    """The CLI's streaming mode prints the same text as `--json` would, for tokens that split characters."""
    ids = real_model(TINY_TARGET).codec.tokenizer("Once 😀 日本語 ok", add_special_tokens=False)["input_ids"]
    real_stream = Decoder.stream

    def stream(self, prompt, max_new_tokens, **kwargs):
        list(real_stream(self, prompt, 1, **kwargs))  # a real run for the statistics line
        yield from ids

    monkeypatch.setattr(Decoder, "stream", stream)
    assert main(["generate", "Once", "--target", tiny(TINY_TARGET), "--draft", tiny(TINY_DRAFT)]) == 0
    assert capsys.readouterr().out == "Once 😀 日本語 ok"
