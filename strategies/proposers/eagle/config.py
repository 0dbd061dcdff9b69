"""The shape of a feature-level draft head, and what it reads from its target.

Two published designs share one module (`network.py`):

- ``eagle1`` (EAGLE and EAGLE-2, arXiv 2401.15077, 2406.16858): the input projection `fc` maps
  [token embedding; target feature] to the head's width, one decoder layer without an input norm
  follows, and its output is a predicted target feature, scored by the target's own LM head (or
  rows of it: a trimmed vocabulary). The feature is the target's final normed hidden state.
- ``eagle3`` (EAGLE-3, arXiv 2503.01840): `fc` fuses the hidden states of several target layers
  (low, middle, high) into one feature; the decoder layer reads [norm(embedding); norm(feature)]
  and the head has its own final norm and LM head, usually over a trimmed vocabulary whose ids
  map to the target's through `d2t`.

A feature layer L is the target's residual stream after L decoder layers (transformers'
`hidden_states[L]`); L equal to the target's layer count is its final normed output. `layers`
stays empty until the head is bound to a target: EAGLE-1 then reads the final output, EAGLE-3 the
layers its checkpoint names or (2, n // 2, n - 3) as published.
"""

from __future__ import annotations

from typing import Any

import attrs

from specdec.errors import ConfigurationError

STYLES = ("eagle1", "eagle3")


def _style(_: object, attribute: attrs.Attribute, value: str) -> None:
    if value not in STYLES:
        raise ConfigurationError(f"{attribute.name} must be one of {', '.join(STYLES)}, got {value!r}")


def _positive(_: object, attribute: attrs.Attribute, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"head config: {attribute.name} must be a positive integer, got {value!r}")


def _layers(value: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in value)


@attrs.frozen
class HeadConfig:
    """Sizes and wiring of one head (see the module docstring)."""

    style: str = attrs.field(validator=_style)
    hidden_size: int = attrs.field(validator=_positive)
    intermediate_size: int = attrs.field(validator=_positive)
    num_heads: int = attrs.field(validator=_positive)
    num_kv_heads: int = attrs.field(validator=_positive)
    vocab_size: int = attrs.field(validator=_positive)  # the target's
    draft_vocab_size: int = attrs.field(validator=_positive)  # tokens the head scores (<= vocab_size)
    target_hidden_size: int = attrs.field(validator=_positive)  # width of one target feature
    head_dim: int = attrs.field(default=0)  # 0: hidden_size // num_heads
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    layers: tuple[int, ...] = attrs.field(default=(), converter=_layers)  # target layers read (see above)
    fc_bias: bool = False  # EAGLE-1 checkpoints carry a bias on `fc`
    own_head: bool = False  # the head has its own LM head weights (EAGLE-3), else the target's rows
    own_embedding: bool = False  # the checkpoint carries the embedding, else the target's is used
    # target features concatenated at the input projection: 1 for EAGLE-1, 3 for EAGLE-3 as published
    fused: int = attrs.field(default=attrs.Factory(lambda self: 1 if self.style == "eagle1" else 3, takes_self=True))

    def __attrs_post_init__(self) -> None:
        if self.draft_vocab_size > self.vocab_size:
            raise ConfigurationError(f"head config: draft_vocab_size {self.draft_vocab_size} exceeds vocab_size {self.vocab_size}")
        if self.num_heads % self.num_kv_heads:
            raise ConfigurationError(f"head config: {self.num_heads} attention heads do not split into {self.num_kv_heads} groups")
        if self.style == "eagle1" and (self.target_hidden_size != self.hidden_size or self.fused != 1):
            raise ConfigurationError("head config: an EAGLE-1 head predicts one target feature, so its width must be the target's")
        if self.layers and len(self.layers) != self.fused:
            raise ConfigurationError(f"head config: {self.fused} fused target features but {len(self.layers)} layers named")

    @property
    def dim(self) -> int:
        """Width of one attention head."""
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def trimmed(self) -> bool:
        return self.draft_vocab_size < self.vocab_size

    def bound(self, num_layers: int) -> "HeadConfig":
        """This config with the target layers it reads made explicit, for a target of `num_layers`."""
        layers = self.layers or default_layers(self.style, num_layers, self.fused)
        if any(not 0 <= layer <= num_layers for layer in layers):
            raise ConfigurationError(f"the head reads target layers {list(layers)} but the target has {num_layers}")
        return attrs.evolve(self, layers=layers)

    def to_dict(self) -> dict[str, Any]:
        data = attrs.asdict(self)
        data["layers"] = list(self.layers)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HeadConfig":
        names = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigurationError(f"head config: unknown fields {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise ConfigurationError(f"head config: {error}") from None


def default_layers(style: str, num_layers: int, fused: int = 3) -> tuple[int, ...]:
    """The target layers a head of `style` reads by default: EAGLE-1 the final output, EAGLE-3 the
    low, middle and high layers (as published)."""
    if style == "eagle1":
        return (num_layers,)
    if fused != 3 or num_layers < 4:
        raise ConfigurationError(
            f"name the target layers this EAGLE-3 head reads (it fuses {fused}; the published default picks 3 of at least "
            f"4 layers, the target has {num_layers})"
        )
    return (2, num_layers // 2, num_layers - 3)
