"""The most any proposer drawing on a draft model and context copies could gain (an oracle ceiling).

Before tuning a proposer for a category it pays to know what the category allows. Given the
target's own greedy output for a prompt, whether the draft model's argmax agrees with each output
token (teacher-forced on the true prefix: exactly what greedy drafting sees while it agrees) and
what the newest n-gram match in the context would copy at each position, an oracle that knows the
output counts the rounds a decoder would need if every round drafted exactly the tokens the
target accepts:

- `draft`: the draft model alone, stopped at its first miss (the best any length policy can do);
- `copy`: the newest context copy alone (prompt lookup with a perfect stop);
- `either`: each round one of the two (a perfect switch between the two proposers);
- `mixed`: switching between the two within a round (a copy, then draft tokens, then another copy,
  as Ouroboros drafts): the ceiling for proposers built on these two sources.
Each oracle stops every round where the fewest rounds in all follow (`fewest_rounds`).

A round emits its accepted run plus one token (the target's correction or bonus), so tokens per
round is what one target forward yields. Pricing each round at one plain target step and drafting
at nothing turns it into a speedup ceiling over target-only decoding (`speedup`), with the
prompt's prefill, which every method pays alike, counted as measured.

`repeated_ngrams` says where the copies come from: the share of the output's n-grams already in
the prompt, and the share that repeat the output itself. A small target decoding greedily falls
into loops as its output grows, and a loop is what copies and the phrase pool predict best: read a
long output's ceiling (and benchmark) against its self-repetition.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from specdec.bench.costs import decode_seconds, prefill_seconds, seconds_per_step
from specdec.errors import ConfigurationError
from specdec.integrations.base import LanguageModel
from specdec.ngram import NgramIndex
from specdec.sampling import checked_max

SOURCES = ("draft", "copy", "either", "mixed")
# n-gram length of `repeated_ngrams`: long enough that a repeat is a repeated phrase, not a common pair
REPEAT_NGRAM = 6


@attrs.frozen
class Ceiling:
    """Rounds each oracle needs for one output of `tokens` tokens."""

    tokens: int
    rounds: dict[str, int]

    def tokens_per_round(self, source: str) -> float:
        return self.tokens / self.rounds[source] if self.rounds[source] else 0.0


def copy_predictions(prompt: Sequence[int], output: Sequence[int], ngram: int = 2, length: int = 10) -> list[list[int]]:
    """At each output position i, what the newest match of the context's last n-gram (n <= `ngram`,
    longest first) continues with, given the true prompt + output[:i]: the proposal of a copy."""
    index = NgramIndex(ngram)
    context = list(prompt)
    index.update(context)
    predictions = []
    for token in output:
        found = index.lookup(context[-ngram:], length, limit=1)
        predictions.append(found[0] if found else [])
        context.append(int(token))
        index.update(context)
    return predictions


def repeated_ngrams(prompt: Sequence[int], output: Sequence[int], n: int = REPEAT_NGRAM) -> tuple[int, int, int]:
    """(the output's n-grams, how many occur in the prompt, how many occurred earlier in the output).

    An n-gram "occurred earlier" when the same n tokens start at an earlier output position
    (overlapping allowed: a loop of period < n counts)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    in_prompt = {tuple(prompt[i:i + n]) for i in range(len(prompt) - n + 1)}
    seen: set[tuple[int, ...]] = set()
    total = from_prompt = from_output = 0
    for i in range(len(output) - n + 1):
        gram = tuple(int(t) for t in output[i:i + n])
        total += 1
        from_prompt += gram in in_prompt
        from_output += gram in seen
        seen.add(gram)
    return total, from_prompt, from_output


def ceiling(output: Sequence[int], draft_agrees: Sequence[bool], copies: Sequence[Sequence[int]]) -> Ceiling:
    """Rounds per oracle (see the module docstring) for one output.

    `draft_agrees[i]`: the draft's argmax after the true output[:i] is output[i];
    `copies[i]`: the copy proposed at position i (`copy_predictions`).
    """
    n = len(output)
    if len(draft_agrees) != n or len(copies) != n:
        raise ValueError(f"need one draft agreement and one copy per output token ({n}), got {len(draft_agrees)} and {len(copies)}")
    copy_run = [0] * (n + 1)  # tokens of the copy proposed at i that the output repeats
    for i in range(n):
        for token in copies[i]:
            if i + copy_run[i] >= n or token != output[i + copy_run[i]]:
                break
            copy_run[i] += 1
    draft_run = [0] * (n + 1)  # agreeing draft tokens from i on
    mixed_run = [0] * (n + 1)  # the longest run from i switching between draft tokens and copies
    for i in range(n - 1, -1, -1):
        draft_run[i] = draft_run[i + 1] + 1 if draft_agrees[i] else 0
        mixed_run[i] = max(
            [draft_run[i] and 1 + mixed_run[i + 1]] + [c + mixed_run[i + c] for c in range(1, copy_run[i] + 1)]
        )
    runs = {
        "draft": draft_run,
        "copy": copy_run,
        "either": [max(d, c) for d, c in zip(draft_run, copy_run)],
        "mixed": mixed_run,
    }
    return Ceiling(n, {source: fewest_rounds(run, n) for source, run in runs.items()})


def fewest_rounds(run: Sequence[int], n: int) -> int:
    """The fewest rounds covering n tokens when a round starting at position i may accept any
    0..run[i] tokens and then emits one more. Taking the longest run every round is not always
    fewest: a shorter one can land where a longer run starts."""
    best = [0] * (n + 1)  # best[i]: rounds for tokens i..n-1
    for i in range(n - 1, -1, -1):
        best[i] = 1 + min(best[min(i + accepted + 1, n)] for accepted in range(run[i] + 1))
    return best[0]


def measure(target: LanguageModel, draft: LanguageModel, ids: Sequence[int], max_new_tokens: int, *, ngram: int = 2, copy_length: int = 10) -> dict | None:
    """One prompt: the target's greedy output, its prefill and step seconds, the draft's
    teacher-forced agreement and each oracle's rounds (None: no output). The models' caches are
    reset (the draft may be the target itself)."""
    from specdec.decoder import Decoder

    if draft.vocab_size != target.vocab_size:
        raise ConfigurationError(f"the draft's vocabulary ({draft.vocab_size}) differs from the target's ({target.vocab_size})")
    result = Decoder(target).generate(list(ids), max_new_tokens)
    output = list(result.ids)
    if not output:
        return None
    prefill = prefill_seconds(target, ids, repeats=2)
    step = seconds_per_step(result.stats.seconds, prefill, len(output))
    agrees = draft_agreement(draft, ids, output)
    found = ceiling(output, agrees, copy_predictions(ids, output, ngram, copy_length))
    grams, from_prompt, from_output = repeated_ngrams(ids, output)
    return {"prompt_tokens": len(ids), "tokens": found.tokens, "rounds": found.rounds, "prefill_seconds": prefill,
            "step_seconds": step, "draft_agreement": sum(agrees) / len(agrees),
            "ngrams": grams, "ngrams_from_prompt": from_prompt, "ngrams_from_output": from_output}


def draft_agreement(draft: LanguageModel, prompt: Sequence[int], output: Sequence[int]) -> list[bool]:
    """Whether the draft's argmax after prompt + output[:i] is output[i], for every i.

    The prompt is read in one forward and the output a token at a time, as a drafting draft reads
    them: reading the output in one forward too would be faster but not the same numbers for an
    int8 draft (dynamic quantization scales each forward's activations together, and a long
    forward's scale is coarse: it agreed 0.10 instead of ~0.2 on summarization)."""
    draft.reset()
    rows = [draft.forward(list(prompt), keep=1).logits[-1]]
    for token in output[:-1]:
        rows.append(draft.forward([int(token)], keep=1).logits[-1])
    draft.reset()
    choices = [int(checked_max(row, "the draft model")) for row in rows]
    return [choice == int(token) for choice, token in zip(choices, output)]


def summarize(records: Sequence[dict]) -> list[dict]:
    """Per category and overall: tokens per round pooled over prompts, and the ceiling speedup as
    total target-only seconds over total oracle seconds (as `specdec bench` pools tokens/s)."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        groups.setdefault(record["category"], []).append(record)
    groups["all"] = list(records)
    rows = []
    for category, group in groups.items():
        tokens = sum(r["tokens"] for r in group)
        if not tokens:
            continue
        plain = sum(decode_seconds(r["prefill_seconds"], r["step_seconds"], r["tokens"]) for r in group)
        row = {"category": category, "prompts": len(group), "prompt_tokens": sum(r["prompt_tokens"] for r in group) / len(group),
               "prefill_share": sum(r["prefill_seconds"] for r in group) / plain if plain else 0.0,
               "draft_agreement": sum(r["draft_agreement"] * r["tokens"] for r in group) / tokens}
        grams = sum(r["ngrams"] for r in group)
        row["repeats_prompt"] = sum(r["ngrams_from_prompt"] for r in group) / grams if grams else float("nan")
        row["repeats_output"] = sum(r["ngrams_from_output"] for r in group) / grams if grams else float("nan")
        for source in SOURCES:
            rounds = sum(r["rounds"][source] for r in group)
            oracle = sum(decode_seconds(r["prefill_seconds"], r["step_seconds"], r["rounds"][source]) for r in group)
            row[f"tokens_per_round_{source}"] = tokens / rounds
            row[f"speedup_{source}"] = plain / oracle if oracle else 1.0
        rows.append(row)
    return rows
