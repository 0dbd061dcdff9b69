"""Training text for a head: the target's own answers, to given prompts and to prompts it wrote.

A head learns to predict what the target says, so its training text is the target's own output:
greedy answers (what greedy decoding verifies against) and sampled ones (what sampling does), to
prompts from a file (`gsm8k_train.jsonl` by default; the evaluation set is refused) and to user
turns the chat target writes itself from the bare chat template (Magpie, arXiv 2406.08464): the
template up to the user's message is fed, optionally with a first word that steers the kind of
request (writing, coding, questions, translation, summaries), and the target's sample up to its
end of turn is the prompt. Nothing is downloaded. A target without a chat template writes plain
text from its beginning-of-sequence token instead, and its first tokens are the prompt.

Everything generated is appended to a JSONL cache as it is made, so an interrupted run resumes
where it stopped; the cache's first line records what it was made for, and a cache made for other
settings is started again. The counts are not part of what a cache was made for: prompts and
answers are made in order, so a run with more prompts extends a smaller run's cache and one with
fewer reads a prefix of it; every cached answer names the prompt it answers, and answers from the
first one to another prompt on are made again.
"""

from __future__ import annotations

import hashlib
import json
import random
import types
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import attrs
import torch

from specdec.errors import ConfigurationError

FORMAT = "specdec-eagle-examples/1"
# first words of self-written user turns: none (pure Magpie) and openers of the kinds of request
# the head should see
OPENERS = (
    "", "", "Write", "Write a short story about", "Write an email", "Write a Python function", "How do I", "How can I",
    "Explain", "What is", "Why", "Translate into French:", "Translate into Spanish:", "Summarize the following text:",
    "Give me", "List", "Compare", "Can you help me", "Describe", "Rewrite this sentence",
)


@attrs.frozen
class Example:
    """One training sequence: a prompt (token ids, chat-wrapped if the target chats) and the
    target's answer to it."""

    prompt: tuple[int, ...] = attrs.field(converter=tuple)
    answer: tuple[int, ...] = attrs.field(converter=tuple)
    kind: str  # "greedy" or "sampled"
    origin: str  # "file" or "self"

    @property
    def tokens(self) -> list[int]:
        return list(self.prompt) + list(self.answer)


@attrs.define
class JsonlCache:
    """Records appended one per line after a header naming what they were made for."""

    path: Path
    key: str

    def load(self) -> list[dict[str, Any]]:
        """The cached records, or none when the file is missing or was made for another key."""
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            header = json.loads(lines[0]) if lines else {}
            records = [json.loads(line) for line in lines[1:] if line.strip()]
        except json.JSONDecodeError:  # a line cut by an interrupted write: keep the whole ones
            header = json.loads(lines[0]) if lines else {}
            records = []
            for line in lines[1:]:
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    break
        if header.get("format") != FORMAT or header.get("key") != self.key:
            return []
        return records

    def start(self, records: Sequence[dict[str, Any]]) -> None:
        """Rewrite the file with its header and `records` (the whole ones of an earlier run)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps({"format": FORMAT, "key": self.key}) + "\n")
            for record in records:
                handle.write(json.dumps(record) + "\n")

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")


def digest(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def user_turn_prefix(codec: Any) -> list[int] | None:
    """The chat template's tokens up to where a user's message begins (None without a template):
    the common prefix of two one-message chats."""
    if not getattr(getattr(codec, "tokenizer", None), "chat_template", None):
        return None
    first, second = codec.apply_chat_template("A"), codec.apply_chat_template("B")
    length = next((i for i, (a, b) in enumerate(zip(first, second)) if a != b), min(len(first), len(second)))
    return list(first[:length])


@attrs.frozen
class Generation:
    """How answers and self-written prompts are generated: in batches, by a copy of the target in
    `dtype` (bfloat16 is several times faster on CPUs with bf16 units; the features are computed
    later by the target as loaded)."""

    max_new_tokens: int = 128
    prompt_tokens: int = 48  # longest self-written prompt
    temperature: float = 0.8  # of sampled answers and self-written prompts
    top_p: float = 0.95
    batch_size: int = 16
    dtype: str = "bfloat16"
    chunk: int = 64  # sequences generated between two writes of the cache


def generator_of(target: Any, dtype: str) -> Any:
    """What `generate_continuations` runs: the target's transformers model in `dtype` (one copy)."""
    import copy

    model = target.model
    wanted = getattr(torch, dtype)
    copied = model if next(model.parameters()).dtype == wanted else copy.deepcopy(model).to(wanted)
    return types.SimpleNamespace(model=copied, eos_token_ids=target.eos_token_ids)


def self_written_prompts(target: Any, count: int, generation: Generation, *, seed: int, cache: JsonlCache,
                         advance: Callable[[int], None] = lambda n: None, generator: Any = None) -> list[list[int]]:
    """`count` prompts the target writes itself (see the module docstring), as token ids ready to
    be answered; cached in `cache`."""
    from specdec.strategies.policies.pacer.collect import generate_continuations

    records = cache.load()
    cache.start(records)
    codec = target.codec
    prefix = user_turn_prefix(codec)
    rng = random.Random(seed)
    openers = [rng.choice(OPENERS) if prefix is not None else "" for _ in range(count)]
    start_ids = prefix if prefix is not None else _text_start(target)
    advance(len(records))
    done = len(records)
    while done < count:
        batch = range(done, min(count, done + generation.chunk))
        seeds = [start_ids + (codec.encode(" " + openers[i] if prefix is None else openers[i]) if openers[i] else []) for i in batch]
        torch.manual_seed(seed * 1_000_003 + done)
        generator = generator or generator_of(target, generation.dtype)
        written = generate_continuations(
            generator, seeds, generation.prompt_tokens, batch_size=generation.batch_size, dtype=getattr(torch, generation.dtype),
            progress=False, temperature=generation.temperature, top_p=generation.top_p,
        )
        fresh = [{"seed": s, "written": w} for s, w in zip(seeds, written)]
        cache.append(fresh)
        records += fresh
        done += len(fresh)
        advance(len(fresh))
    prompts = []
    for record in records[:count]:
        if prefix is None:  # plain text: the sample is the prompt
            prompts.append(list(record["seed"]) + list(record["written"]))
            continue
        text = codec.decode(list(record["seed"][len(prefix):]) + [t for t in record["written"] if t not in target.eos_token_ids])
        if text.strip():
            prompts.append(list(codec.apply_chat_template(text.strip())))
    return prompts


def _text_start(target: Any) -> list[int]:
    """Where plain text begins for a target without a chat template: its encoding of no text
    (the beginning-of-sequence token, for tokenizers that add one)."""
    ids = list(target.codec.encode(""))
    if not ids:
        raise ConfigurationError(f"the target {target.name!r} has no chat template and no beginning-of-sequence token to write prompts from")
    return ids


def answer(target: Any, prompts: Sequence[Sequence[int]], origin: str, samples: int, generation: Generation, *, seed: int,
           cache: JsonlCache, advance: Callable[[int], None] = lambda n: None, generator: Any = None) -> list[Example]:
    """The target's greedy answer and `samples` sampled answers to every prompt; cached in `cache`."""
    from specdec.strategies.policies.pacer.collect import generate_continuations

    jobs = [(i, kind) for i in range(len(prompts)) for kind in ["greedy"] + ["sampled"] * samples]
    named = [digest(list(prompts[i])) for i in range(len(prompts))]
    records = cache.load()
    for k, record in enumerate(records[: len(jobs)]):  # keep the answers up to the first to another prompt
        if (record["prompt"], record["kind"]) != jobs[k] or record["of"] != named[record["prompt"]]:
            records = records[:k]
            break
    cache.start(records)
    done = min(len(records), len(jobs))
    advance(done)
    while done < len(jobs):
        chunk = jobs[done : done + generation.chunk]
        answers: list[list[int]] = [[] for _ in chunk]
        generator = generator or generator_of(target, generation.dtype)
        for kind, temperature in (("greedy", 0.0), ("sampled", generation.temperature)):
            rows = [j for j, (_, k) in enumerate(chunk) if k == kind]
            if not rows:
                continue
            torch.manual_seed(seed * 1_000_003 + done)
            made = generate_continuations(
                generator, [list(prompts[chunk[j][0]]) for j in rows], generation.max_new_tokens, batch_size=generation.batch_size,
                dtype=getattr(torch, generation.dtype), progress=False, temperature=temperature,
                top_p=generation.top_p if temperature else None,
            )
            for j, tokens in zip(rows, made):
                answers[j] = tokens
        fresh = [{"prompt": i, "of": named[i], "kind": kind, "answer": a} for (i, kind), a in zip(chunk, answers)]
        cache.append(fresh)
        records += fresh
        done += len(fresh)
        advance(len(fresh))
    return [Example(prompts[r["prompt"]], r["answer"], r["kind"], origin) for r in records[: len(jobs)] if r["answer"]]
