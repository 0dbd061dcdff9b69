"""Whether a draft model's tokenizer is the target's: a draft of the same vocabulary size but
another tokenizer drafts token ids that mean other words, so nearly nothing it drafts is accepted
(the output stays exact, the run is slower than without it). Sizes alone cannot tell; the
decoded text of a spread of token ids can, cheaply."""

from __future__ import annotations

from specdec.errors import VocabularyMismatchError
from specdec.integrations.base import LanguageModel

SAMPLE = 512  # token ids compared, spread over the vocabulary
TOLERATED = 0.01  # share of them that may differ (special tokens spelled differently)


def check_same_tokenizer(target: LanguageModel, draft: LanguageModel, vocab_size: int) -> None:
    """Raise `VocabularyMismatchError` when the two models' tokenizers decode more than
    `TOLERATED` of `SAMPLE` token ids differently (models without a tokenizer are not compared)."""
    ours, theirs = target.codec, draft.codec
    if ours is None or theirs is None or ours is theirs or vocab_size < 1:
        return
    ids = range(0, vocab_size, max(1, vocab_size // SAMPLE))
    differing = [i for i in ids if ours.decode([i]) != theirs.decode([i])]
    if len(differing) > TOLERATED * len(ids):
        first = differing[0]
        raise VocabularyMismatchError(
            f"the draft's tokenizer is not the target's: {len(differing)} of {len(ids)} token ids compared decode "
            f"differently (id {first}: {ours.decode([first])!r} for the target, {theirs.decode([first])!r} for the "
            "draft), so its drafts would almost never be accepted; use a draft trained with the target's tokenizer"
        )
