"""The verifier's verdict on one round, shared with policies and proposers for adaptation."""

from __future__ import annotations

import attrs
import torch


@attrs.frozen
class TargetFeatures:
    """The target's hidden states of the layers a proposer reads (`Proposer.target_layers`) at the
    positions a round's verify forward fed and kept: the context it had not read yet and the
    accepted draft (and branch) tokens. The token the round emitted last has none yet (the target
    reads it next round), so after every round they cover the whole context but its last token.
    """

    start: int  # absolute position of the first row
    layers: tuple[torch.Tensor, ...] = attrs.field(eq=False, repr=False)  # [rows, hidden] per layer, in target_layers order

    def __len__(self) -> int:
        return int(self.layers[0].shape[0]) if self.layers else 0


@attrs.frozen
class Verification:
    """Outcome of verifying a draft against one target forward.

    `tokens` are the tokens to emit: the accepted draft prefix, then the correction (after a
    rejection) or the bonus token (when all were accepted), except after an accepted EOS.
    `target_argmax[i]` is the target's most likely token at draft position i (i == drafted is the
    bonus position); proposers harvest phrases from it and the oracle policy analyses with it.
    Rounds that drafted nothing (plain target steps) are reported too, with drafted == 0.

    With branches (`Draft.branches`), `accepted` still counts the draft's own tokens only, so
    acceptance rates keep their meaning; `branch_tokens` counts the branch tokens emitted after
    them (len(tokens) is then accepted + branch_tokens + 1, or without the 1 after an EOS).
    `tree_path` lists the accepted nodes of `Draft.tree` and `tree_argmax[j]` is the target's
    argmax after branch node len(draft) + j, so proposers can harvest the target's corrections.
    """

    drafted: int
    accepted: int
    tokens: tuple[int, ...]
    target_argmax: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False)
    eos: bool = False
    branch_tokens: int = 0
    tree_path: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False)
    tree_argmax: tuple[int, ...] = attrs.field(default=(), eq=False, repr=False)
    # filled in by the decoder, for policies that weigh cost (0.0 when unknown)
    draft_seconds: float = 0.0
    verify_seconds: float = 0.0
    context_length: int = 0  # committed tokens before this round
    draft_forwards: int = 0  # draft-model forwards the round made (`Draft.forwards`)
    # the target's hidden states the proposer reads, at the positions this round committed (None: it reads none)
    target_features: TargetFeatures | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def width(self) -> int:
        """Tokens the target's forward processed: the draft, its branches and the bonus position
        (what the verify time paid for)."""
        return self.drafted + 1 + len(self.tree_argmax)

    @property
    def all_accepted(self) -> bool:
        return self.accepted == self.drafted
