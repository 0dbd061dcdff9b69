"""One generation at a time per Decoder and per model, with real threads: a second generation
that would share a decoder's or a model's cache is refused at once, never run into a wrong answer;
decoders with models of their own generate in parallel threads exactly as alone."""

from __future__ import annotations

import threading

import pytest

from specdec import Decoder
from specdec import ConcurrentUseError
from specdec.integrations.loading import load_model
from tests.models import model_path
from tests.plugin_tools import TINY_DRAFT, TINY_TARGET

PROMPT, TOKENS = "Once upon a time", 24


def pair() -> Decoder:
    return Decoder(load_model(model_path(TINY_TARGET)), draft=load_model(model_path(TINY_DRAFT), require_tokenizer=False))


@pytest.fixture(scope="module")
def reference() -> tuple[int, ...]:
    return pair().generate(PROMPT, TOKENS).ids


class Paused:
    """A streamer that holds its generation inside its first round until released."""

    def __init__(self) -> None:
        self.inside, self.release = threading.Event(), threading.Event()
        self.rounds = 0

    def put(self, value) -> None:
        self.rounds += 1
        if self.rounds == 2:  # the prompt came first: this is the first round's tokens
            self.inside.set()
            assert self.release.wait(60)

    def end(self) -> None:
        pass


def while_generating(decoder: Decoder, action) -> tuple[object, tuple[int, ...]]:
    """Run `action()` in this thread while `decoder` is generating in another; (its outcome, the ids
    that generation produced)."""
    streamer, results = Paused(), []
    thread = threading.Thread(target=lambda: results.append(decoder.generate(PROMPT, TOKENS, streamer=streamer)))
    thread.start()
    assert streamer.inside.wait(60)
    try:
        outcome = action()
    except ConcurrentUseError as error:
        outcome = error
    finally:
        streamer.release.set()
        thread.join(60)
    return outcome, results[0].ids


def test_a_second_thread_on_the_same_decoder_is_refused(reference):
    decoder = pair()
    outcome, ids = while_generating(decoder, lambda: decoder.generate(PROMPT, TOKENS))
    assert isinstance(outcome, ConcurrentUseError) and "this Decoder is already generating" in str(outcome)
    assert ids == reference
    assert decoder.generate(PROMPT, TOKENS).ids == reference  # released at the end


def test_a_second_decoder_on_the_same_target_is_refused(reference):
    first = pair()
    second = Decoder(first.target, draft=load_model(model_path(TINY_DRAFT), require_tokenizer=False))
    outcome, ids = while_generating(first, lambda: second.generate(PROMPT, TOKENS))
    assert isinstance(outcome, ConcurrentUseError) and f"the model {TINY_TARGET!r} is already generating" in str(outcome)
    assert ids == reference
    assert second.generate(PROMPT, TOKENS).ids == reference


def test_a_second_decoder_on_the_same_draft_is_refused(reference):
    first = pair()
    second = Decoder(load_model(model_path(TINY_TARGET)), draft=first.proposer.model)
    outcome, ids = while_generating(first, lambda: second.generate(PROMPT, TOKENS))
    assert isinstance(outcome, ConcurrentUseError) and "is already generating for another Decoder" in str(outcome)
    assert ids == reference


def test_an_unfinished_stream_holds_the_decoder_until_closed(reference):
    decoder = pair()
    stream = decoder.stream(PROMPT, TOKENS)
    next(stream)
    with pytest.raises(ConcurrentUseError, match="a stream not run to its end"):
        decoder.generate(PROMPT, TOKENS)
    stream.close()
    assert decoder.generate(PROMPT, TOKENS).ids == reference


def test_a_generation_that_fails_releases_its_claim(reference):
    class Broken:
        def put(self, value) -> None:
            raise RuntimeError("streamer failed")

        def end(self) -> None:
            pass

    decoder = pair()
    with pytest.raises(RuntimeError, match="streamer failed"):
        decoder.generate(PROMPT, TOKENS, streamer=Broken())
    assert decoder.generate(PROMPT, TOKENS).ids == reference


def test_threads_sharing_a_decoder_get_the_right_output_or_an_error(reference):
    decoder, outcomes = pair(), []
    start = threading.Barrier(4)

    def work() -> None:
        start.wait()
        for _ in range(4):
            try:
                outcomes.append(decoder.generate(PROMPT, TOKENS).ids)
            except ConcurrentUseError:
                outcomes.append(None)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == 16 and all(ids in (reference, None) for ids in outcomes)
    assert reference in outcomes


def test_decoders_with_their_own_models_generate_in_parallel_as_alone(reference):
    decoders, outcomes = [pair() for _ in range(3)], []
    start = threading.Barrier(3)

    def work(decoder: Decoder) -> None:
        start.wait()
        outcomes.extend(decoder.generate(PROMPT, TOKENS).ids for _ in range(3))

    threads = [threading.Thread(target=work, args=(d,)) for d in decoders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert outcomes == [reference] * 9
