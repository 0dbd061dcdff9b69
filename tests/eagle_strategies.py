"""Toy EAGLE heads over the toy targets of the exact test (an entry of PROPOSER_STRATEGIES).

A toy target (`integrations/toy.py`) is a `FeatureModel` whose every layer's state is the one-hot
of the token fed, with an identity embedding and LM head; a head over it has the target's
vocabulary as its width. Heads are random (the output is exact whatever they propose), in both
designs, over the full or a trimmed vocabulary, in float64 like the toy tables.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from hypothesis import strategies as st

from specdec.strategies.proposers.eagle import EagleHead, EagleProposer, HeadConfig


def toy_head(vocab: int, style: str, seed: int, draft_tokens: int, scale: float = 1.0) -> EagleHead:
    """A random head for a toy target of `vocab` tokens (`draft_tokens` < vocab: a trimmed vocabulary)."""
    config = HeadConfig(
        style=style, hidden_size=vocab, intermediate_size=6, num_heads=2, num_kv_heads=1, head_dim=2, vocab_size=vocab,
        draft_vocab_size=draft_tokens, target_hidden_size=vocab, own_head=style == "eagle3",
        layers=(1,) if style == "eagle1" else (0, 1, 1),
    )
    generator = torch.Generator().manual_seed(seed)
    head = EagleHead(config).double()
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.copy_(scale * torch.randn(parameter.shape, generator=generator, dtype=torch.float64))
    if config.trimmed:
        head.set_draft_vocabulary(torch.randperm(vocab, generator=generator)[:draft_tokens].sort().values)
    return head


def eagle_factories(pair: Any) -> st.SearchStrategy[Callable[[], EagleProposer]]:
    """Random heads of both designs over the pair's target, fresh proposer state per run."""

    def build(style, seed, trimmed, scale):
        head = toy_head(pair.vocab, style, seed, pair.vocab - 1 if trimmed else pair.vocab, scale)
        return lambda: EagleProposer.from_head(pair.target, head)

    return st.builds(build, st.sampled_from(["eagle1", "eagle3"]), st.integers(0, 10_000), st.booleans(), st.sampled_from([0.5, 2.0]))


@functools.lru_cache(maxsize=None)
def tiny_head_dir() -> str:
    """A directory holding an untrained EAGLE-1 head for the tiny target (stories260K), written once
    per test run: what `proposer="eagle"` by name needs there (no head ships for that target)."""
    from specdec.strategies.proposers.eagle import save_head
    from specdec.strategies.proposers.eagle.proposer import target_fingerprint
    from tests.models import real_model

    target = real_model("stories260K")
    config = target.model.config
    head = EagleHead(HeadConfig(
        style="eagle1", hidden_size=target.hidden_size, intermediate_size=config.intermediate_size,
        num_heads=config.num_attention_heads, num_kv_heads=config.num_key_value_heads, vocab_size=target.vocab_size,
        draft_vocab_size=target.vocab_size, target_hidden_size=target.hidden_size,
    ))
    folder = Path(tempfile.mkdtemp(prefix="specdec-tiny-eagle-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    save_head(head, folder, target_name="stories260K", target_fingerprint=target_fingerprint(target))
    return str(folder)


def proposer_params(proposer: str) -> dict[str, str] | None:
    """The parameters a proposer needs by name on the tiny pair (eagle: a head for that target)."""
    return {"path": tiny_head_dir()} if proposer == "eagle" else None
