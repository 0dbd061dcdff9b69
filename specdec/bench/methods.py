"""Decoding methods under test, behind one tiny interface: ids in, (new ids, stats) out."""

from __future__ import annotations

import contextlib
import copy
import time
from typing import Any, Callable, Protocol, Sequence

import attrs
import torch

from specdec.decoder import Decoder
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

    def run(self, ids: Sequence[int], max_new_tokens: int, temperature: float, seed: int) -> MethodRun:
        kwargs = dict(self.options)
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_k=None, top_p=None)
        else:
            kwargs.update(do_sample=False)
        config = self.model.generation_config
        kwargs["pad_token_id"] = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        torch.manual_seed(seed)
        input_ids = torch.tensor([list(ids)])
        with self._assistant_configured():
            start = time.perf_counter()
            with torch.inference_mode():
                out = self.model.generate(input_ids, max_new_tokens=max_new_tokens, assistant_model=self.assistant, **kwargs)
            seconds = time.perf_counter() - start
        return MethodRun(tuple(out[0, len(ids):].tolist()), seconds)
