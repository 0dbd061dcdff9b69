"""`specdec train-eagle` end to end on the tiny pair: it writes a head that loads by path, keeps
decoding exact and drafts what the target says (held-out acceptance well above an untrained
head's), a rerun reuses every cache (an interrupted one resumes), and the evaluation set is
refused. The chat path (Magpie: user turns written from the bare chat template) runs on the
4-layer SmolLM2 draft, a real chat model with the default target's template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import specdec.strategies.policies.pacer.collect as collect
import specdec.strategies.proposers.eagle.features as features
from specdec import ConfigurationError, Decoder
from specdec.cli import main
from specdec.sampling import SamplingConfig
from specdec.strategies.policies import FixedPolicy
from specdec.strategies.proposers.eagle import EagleProposer, load_head
from specdec.strategies.proposers.eagle.data import Generation, JsonlCache, self_written_prompts, user_turn_prefix
from tests.models import model_path, real_model
from tests.test_lossless_exact import GreedyDrawWithSoftQ, drafting_through

STORY_STARTS = ["Once upon a time", "The little dog", "Lily wanted to", "Tom and his mom", "One day, a bird", "The sun was",
                "A big red ball", "Sam liked to"]


def tiny_args(out: Path, prompts: Path, *extra: str) -> list[str]:
    return [
        "train-eagle", "--target", model_path("stories260K"), "--prompts", str(prompts), "--num-prompts", "8",
        "--self-prompts", "56", "--max-new-tokens", "48", "--prompt-tokens", "10", "--no-chat", "--epochs", "8",
        "--batch-tokens", "384", "--lr", "3e-3", "--draft-vocab", "0", "--held-out", "0.15", "--threads", "1",
        "--out", str(out), *extra,
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One training run on the tiny pair (about half a minute), shared by the tests below."""
    folder = tmp_path_factory.mktemp("train-eagle")
    prompts = folder / "prompts.txt"
    prompts.write_text("\n".join(STORY_STARTS) + "\n")
    assert main(tiny_args(folder / "out", prompts)) == 0
    return folder


def test_the_trained_head_drafts_what_the_target_says(trained):
    report = json.loads((trained / "out" / "report.json").read_text())
    held = report["held_out"]
    # an untrained or misaligned head agrees with the target on ~0.01 of positions
    assert held["first_token_agreement"] > 0.35 and held["mean_accepted_length"] > 1.6, held
    assert report["sequences"]["measured"] > 0 and held["chains"] > 100
    assert report["data"]["self_prompts"] == 56 and report["data"]["answers"] == 2 * (8 + 56)


def test_the_trained_head_loads_by_path_and_decoding_stays_exact(trained):
    target = real_model("stories260K")
    loaded = load_head(trained / "out")
    assert loaded.target_name == "stories260K" and loaded.target_fingerprint
    decoder = Decoder(target, proposer="eagle", policy="fixed", proposer_params={"path": str(trained / "out")})
    reference = Decoder(target)
    accepted = 0
    for prompt in ["Once upon a time", "The cat"]:
        result = decoder.generate(prompt, 40)
        assert result.ids == reference.generate(prompt, 40).ids
        accepted += result.stats.accepted
    assert accepted > 10  # the head's drafts are accepted in real decoding too


def test_a_rerun_reuses_every_cache(trained, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed what was cached")

    monkeypatch.setattr(collect, "generate_continuations", refuse)
    monkeypatch.setattr(features, "_teacher_force", refuse)
    assert main(tiny_args(trained / "again", trained / "prompts.txt", "--cache", str(trained / "out" / "cache"), "--epochs", "1")) == 0
    assert (trained / "again" / "model.safetensors").is_file()


def test_an_interrupted_run_resumes_where_it_stopped(trained, tmp_path, monkeypatch):
    """Answers cut after a few (the last line half written) and a feature chunk missing: only
    those are made again."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(trained / "out" / "cache", cache)
    answers = cache / "answers-self.jsonl"
    lines = answers.read_text().splitlines()
    answers.write_text("\n".join(lines[:41]) + "\n" + lines[41][: len(lines[41]) // 2])
    (cache / "features" / "features-00002.safetensors").unlink()
    made = {"answers": 0, "chunks": 0}
    generate, force = collect.generate_continuations, features._teacher_force

    def counting_generate(model, prompts, *args, **kwargs):
        made["answers"] += len(prompts)
        return generate(model, prompts, *args, **kwargs)

    def counting_force(target, examples, layers):
        made["chunks"] += 1
        return force(target, examples, layers)

    monkeypatch.setattr(collect, "generate_continuations", counting_generate)
    monkeypatch.setattr(features, "_teacher_force", counting_force)
    assert main(tiny_args(tmp_path / "out", trained / "prompts.txt", "--cache", str(cache), "--epochs", "1")) == 0
    assert made["answers"] == 2 * 56 - 40  # the 40 whole answers of the self-written prompts were kept
    # 8 file prompts and 56 self-written ones, 2 answers each, 32 sequences a chunk: chunk 0 holds
    # only unchanged answers; from the cut on (sequence 16 + 40, in chunk 1) the answers are new
    # samples, so chunks 1 and 3 are made again although their files exist, and the missing 2 too
    assert made["chunks"] == 3


def test_fewer_prompts_read_the_cache_and_more_extend_it(trained, tmp_path, monkeypatch):
    """The counts are not part of a cache's key: 40 self-written prompts are the first 40 of the
    cached 56 (nothing is generated), 60 add four prompts and their two answers each."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(trained / "out" / "cache", cache)
    made = []
    generate = collect.generate_continuations

    def counting_generate(model, prompts, *args, **kwargs):
        made.append(len(prompts))
        return generate(model, prompts, *args, **kwargs)

    monkeypatch.setattr(collect, "generate_continuations", counting_generate)
    for count, expected in ((40, 0), (60, 4 + 2 * 4)):
        made.clear()
        args = tiny_args(tmp_path / f"out{count}", trained / "prompts.txt", "--cache", str(cache), "--epochs", "1")
        args[args.index("--self-prompts") + 1] = str(count)
        assert main(args) == 0
        assert sum(made) == expected, (count, made)
        assert json.loads((tmp_path / f"out{count}" / "report.json").read_text())["data"]["self_prompts"] == count


def test_answers_to_a_changed_prompt_are_made_again(trained, tmp_path, monkeypatch):
    """Self-written prompt 10 edited in its cache: the answers from its own on are made again."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(trained / "out" / "cache", cache)
    prompts = cache / "self-prompts.jsonl"
    lines = prompts.read_text().splitlines()
    record = json.loads(lines[1 + 10])
    record["written"] = [(t + 1) % 512 for t in record["written"]]
    lines[1 + 10] = json.dumps(record)
    prompts.write_text("\n".join(lines) + "\n")
    made = []
    generate = collect.generate_continuations

    def counting_generate(model, prompts, *args, **kwargs):
        made.append(len(prompts))
        return generate(model, prompts, *args, **kwargs)

    monkeypatch.setattr(collect, "generate_continuations", counting_generate)
    assert main(tiny_args(tmp_path / "out", trained / "prompts.txt", "--cache", str(cache), "--epochs", "1")) == 0
    assert sum(made) == 2 * 56 - 2 * 10


def test_the_evaluation_set_is_refused(tmp_path):
    spec_bench = tmp_path / "spec_bench.jsonl"
    spec_bench.write_text('{"turns": ["hi"]}\n')
    from specdec.cli.train_pacer import read_prompts

    with pytest.raises(ConfigurationError, match="evaluation set"):
        read_prompts(spec_bench, 1, 0)
    assert main(["train-eagle", "--prompts", str(spec_bench), "--out", str(tmp_path / "o")]) == 2


def test_a_chat_model_writes_its_own_user_turns_from_the_bare_template(tmp_path):
    """Magpie on a real chat model: the template up to the user's message, the model's sample up
    to its end of turn, wrapped as a prompt of its own."""
    chat_model = real_model("smollm2-draft")  # a chat model with the default target's template
    prefix = user_turn_prefix(chat_model.codec)
    assert chat_model.codec.tokenizer.decode(prefix).endswith("<|im_start|>user\n")
    cache = JsonlCache(tmp_path / "self.jsonl", "k")
    prompts = self_written_prompts(chat_model, 4, Generation(prompt_tokens=16, batch_size=4, chunk=2), seed=3, cache=cache)
    assert 1 <= len(prompts) <= 4
    for prompt in prompts:
        text = chat_model.codec.tokenizer.decode(prompt)
        assert text.startswith(chat_model.codec.tokenizer.decode(prefix)) and text.endswith("<|im_start|>assistant\n")
    assert len(cache.load()) == 4  # every sample is cached, the empty ones too


# ----------------------------------------------------------------------------- statistics
def _exact_next_two(target, ids: list[int], sampling: SamplingConfig) -> dict[tuple[int, int], float]:
    from specdec.sampling import warp

    with torch.inference_mode():
        p2 = warp(target.model(torch.tensor([ids])).logits[0, -1].float(), sampling)
        seconds = [int(t) for t in torch.nonzero(p2 > 1e-7).flatten()]
        p3 = warp(target.model(torch.tensor([ids + [t] for t in seconds])).logits[:, -1].float(), sampling)
    return {(t2, t3): float(p2[t2] * p3[i, t3]) for i, t2 in enumerate(seconds) for t3 in torch.nonzero(p3[i] > 0).flatten().tolist()}


def _conditional_pvalue(decoder, target, prompt: str, sampling: SamplingConfig, samples: int) -> float:
    """Chi-square of tokens 2 and 3 given the most likely first token: the head drafts from the
    second round on (the first reads the prompt), so these are the tokens its drafts decide."""
    from specdec import TorchSampler
    from tests.test_real_sampling_statistics import chi_square_pvalue

    ids = decoder.encode(prompt)
    sampler = TorchSampler(seed=99)
    kept: dict[int, list[tuple[int, int]]] = {}
    for _ in range(samples):
        got = decoder.generate(ids, 3, temperature=sampling.temperature, sampler=sampler).ids
        kept.setdefault(got[0], []).append((got[1], got[2]))
    first = max(kept, key=lambda t: len(kept[t]))
    return chi_square_pvalue(kept[first], _exact_next_two(target, ids + [first], sampling))


@pytest.mark.exhaustive
@pytest.mark.parametrize("planted", [False, True], ids=["head", "planted-soft-q"])
def test_sampling_with_the_trained_head_follows_the_target(trained, planted):
    target = real_model("stories260K")
    # the planted bug drafts the head's argmax but reports the head's whole distribution as its q
    cls = drafting_through(GreedyDrawWithSoftQ, EagleProposer) if planted else EagleProposer
    proposer = cls(target, path=str(trained / "out"))
    decoder = Decoder(target, proposer=proposer, policy=FixedPolicy(2))
    pvalue = _conditional_pvalue(decoder, target, "Once upon a time, there was a", SamplingConfig(1.0), 6000)
    if planted:
        assert pvalue < 1e-3
    else:
        assert pvalue > 1e-3, f"chi-square rejects the target distribution (p = {pvalue:.2g})"
