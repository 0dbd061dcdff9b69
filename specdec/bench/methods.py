"""Decoding methods under test, behind one tiny interface: ids in, (new ids, stats) out."""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Any, Callable, Protocol, Sequence

import attrs
import torch

from specdec.decoder import Decoder
from specdec.errors import ConfigurationError
from specdec.policy import SelfTimedPolicy


@attrs.frozen
class MethodRun:
    ids: tuple[int, ...]
    seconds: float
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    overhead_seconds: float = float("nan")  # time outside model forwards (specdec methods only)
    policy_seconds: float = float("nan")  # of which in the policy, for policies that time themselves (PACER)


class Method(Protocol):
    name: str

    def run(self, ids: Sequence[int], max_new_tokens: int, temperature: float, seed: int) -> MethodRun: ...


@attrs.frozen
class BatchRun:
    """One method decoding one batch of prompts together: each row's new ids, the batch's wall-clock
    seconds and the rows' summed round counts (zero for methods that do not speculate)."""

    ids: tuple[tuple[int, ...], ...]
    seconds: float
    rounds: int = 0
    drafted: int = 0
    accepted: int = 0
    target_forwards: int = 0
    draft_forwards: int = 0


class BatchMethod(Protocol):
    """A method that decodes several prompts at once (`specdec bench --batch-size`)."""

    name: str

    def run_batch(self, batch: Sequence[Sequence[int]], max_new_tokens: int, temperature: float, seed: int) -> BatchRun: ...


@attrs.define
class SpecdecMethod:
    """A specdec Decoder (speculative, or target-only when it has no proposer)."""

    name: str
    decoder: Decoder
    coupled: bool = False  # coupled sampling (`SamplingConfig.coupled`; no effect when greedy)

    def run(self, ids: Sequence[int], max_new_tokens: int, temperature: float, seed: int) -> MethodRun:
        self.decoder.prepare(list(ids), max_new_tokens)  # the analysis-only oracle: an untimed reference
        policy_before = _policy_seconds(self.decoder.policy)
        result = self.decoder.generate(list(ids), max_new_tokens, temperature=temperature, seed=seed, coupled=self.coupled)
        s = result.stats
        return MethodRun(
            result.ids, s.seconds, s.rounds, s.drafted, s.accepted, s.target_forwards, s.draft_forwards,
            s.draft_seconds, s.verify_seconds, s.overhead_seconds,
            _policy_seconds(self.decoder.policy) - policy_before,
        )

    def run_batch(self, batch: Sequence[Sequence[int]], max_new_tokens: int, temperature: float, seed: int) -> BatchRun:
        """Every prompt of `batch` in one batched call (row i samples as sequence i of `seed`)."""
        prompts = [list(ids) for ids in batch]
        start = time.perf_counter()
        results = self.decoder.generate(
            prompts, max_new_tokens, temperature=temperature, seed=seed, coupled=self.coupled, batch_size=len(prompts),
        )
        seconds = time.perf_counter() - start
        stats = [r.stats for r in results]
        return BatchRun(
            tuple(r.ids for r in results), seconds, sum(s.rounds for s in stats), sum(s.drafted for s in stats),
            sum(s.accepted for s in stats), sum(s.target_forwards for s in stats), sum(s.draft_forwards for s in stats),
        )


def _policy_seconds(policy: object) -> float:
    """Seconds a policy reports spending in itself (NaN when it does not time itself)."""
    return policy.overhead_seconds if isinstance(policy, SelfTimedPolicy) else float("nan")


ASSISTANT_OPTIONS = frozenset({"num_assistant_tokens", "num_assistant_tokens_schedule", "assistant_confidence_threshold"})


@attrs.define
class HFGenerateMethod:
    """transformers' own `generate`, optionally with assisted generation (same models, same run)."""

    name: str
    model: Any  # transformers model of the target
    options: dict[str, Any] = attrs.field(factory=dict)
    assistant: Any = None
    counter: Callable[[], tuple[int, int]] | None = None

    @contextlib.contextmanager
    def _assistant_configured(self):
        """transformers (5.x) reads the assisted-generation options from the *assistant's*
        generation config, not from `generate`'s arguments (and its heuristic schedule writes its
        state back there): set them on the assistant for this run, then restore its config, so
        methods sharing one draft model do not leak settings into each other."""
        if self.assistant is None:
            yield
            return
        saved = copy.deepcopy(self.assistant.generation_config)
        for key in ASSISTANT_OPTIONS & self.options.keys():
            setattr(self.assistant.generation_config, key, self.options[key])
        try:
            yield
        finally:
            self.assistant.generation_config = saved

    def _generate_options(self, temperature: float) -> dict[str, Any]:
        """`generate`'s keywords for this method at `temperature` (0: greedy)."""
        kwargs = dict(self.options)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_k=None, top_p=None)
        else:
            kwargs.update(do_sample=False)
        kwargs["pad_token_id"] = self._pad_id()
        return kwargs

    def _pad_id(self) -> int:
        config = self.model.generation_config
        return config.pad_token_id if config.pad_token_id is not None else config.eos_token_id

    def run(self, ids: Sequence[int], max_new_tokens: int, temperature: float, seed: int) -> MethodRun:
        kwargs = self._generate_options(temperature)
        torch.manual_seed(seed)
        input_ids = torch.tensor([list(ids)])
        with self._assistant_configured():
            start = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(input_ids, max_new_tokens=max_new_tokens, assistant_model=self.assistant, **kwargs)
            seconds = time.perf_counter() - start
        return MethodRun(tuple(out[0, len(ids):].tolist()), seconds)

    def run_batch(self, batch: Sequence[Sequence[int]], max_new_tokens: int, temperature: float, seed: int) -> BatchRun:
        """All prompts in one `generate` call, left-padded with an attention mask; each row's ids end
        at its first end-of-sequence token (the rows after it are padding). transformers' assisted
        and prompt-lookup generation refuse batches (`spec.check_batchable` says so first)."""
        if self.assistant is not None or self.options:
            raise ConfigurationError(f"{self.name!r} cannot decode a batch: transformers runs it one prompt at a time")
        kwargs = self._generate_options(temperature)
        width = max(len(ids) for ids in batch)
        pad = kwargs["pad_token_id"]
        input_ids = torch.tensor([[pad] * (width - len(ids)) + list(ids) for ids in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
        eos = _eos_ids(self.model.generation_config.eos_token_id)
        torch.manual_seed(seed)
        start = time.perf_counter()
        with torch.inference_mode():
            out = self.model.generate(input_ids, attention_mask=mask, max_new_tokens=max_new_tokens, **kwargs)
        seconds = time.perf_counter() - start
        return BatchRun(tuple(_until_eos(row[width:].tolist(), eos) for row in out), seconds)


def _eos_ids(eos: int | Sequence[int] | None) -> frozenset[int]:
    if eos is None:
        return frozenset()
    return frozenset([eos] if isinstance(eos, int) else eos)


def _until_eos(ids: list[int], eos: frozenset[int]) -> tuple[int, ...]:
    """`ids` up to and with its first end-of-sequence token (what follows in a batch is padding)."""
    for i, token in enumerate(ids):
        if token in eos:
            return tuple(ids[: i + 1])
    return tuple(ids)
